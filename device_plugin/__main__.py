"""``onload-device-plugin``: advertise ``amd.com/onload`` to the kubelet until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys

from device_plugin.config import ConfigError, PluginConfig, load_plugin_config
from device_plugin.logs import configure_logging
from device_plugin.metrics import PluginMetrics
from device_plugin.server import DevicePluginService

log = logging.getLogger("device_plugin")


async def run_until_signalled(config: PluginConfig) -> int:
    metrics = PluginMetrics()
    http = await metrics.serve(config.metrics_address, config.metrics_port) if config.metrics_port else None
    service = DevicePluginService(config, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    service_task = asyncio.create_task(service.run(), name="device-plugin")
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    try:
        await asyncio.wait({service_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if service_task.done():
            log.error("device plugin stopped unexpectedly", exc_info=service_task.exception())
            return 1
        log.info("signal received: stopping")
        service_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await service_task
        return 0
    finally:
        stop_task.cancel()
        if http is not None:
            http.close()
            await http.wait_closed()


def main() -> None:
    try:
        config = load_plugin_config(sys.argv[1:], os.environ)
    except ConfigError as exc:
        print(f"onload-device-plugin: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(config.log_format, config.log_level)
    log.info("starting", extra={"config": dataclasses.asdict(config)})
    sys.exit(asyncio.run(run_until_signalled(config)))


if __name__ == "__main__":
    main()
