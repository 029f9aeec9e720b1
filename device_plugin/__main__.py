"""``onload-device-plugin``: advertise ``amd.com/onload`` to the kubelet until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys

from device_plugin.config import PluginConfig, config_or_exit, load_plugin_config
from device_plugin.lifecycle import DevicePluginService
from device_plugin.logs import configure_logging
from device_plugin.metrics import PluginMetrics

log = logging.getLogger("device_plugin")

PROC_ROOT = "/proc"
"""The host's processes: the device-plugin pod runs with the host's PID namespace."""


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
        if config.remove_unused_host_files:
            remove_unused_host_files(config)
        return 0
    finally:
        stop_task.cancel()
        if http is not None:
            http.close()
            await http.wait_closed()


def remove_unused_host_files(config: PluginConfig) -> None:
    """After the server stopped, so that no new answer can name a version: see ``device_plugin.hostfiles``."""
    # Imported here: a running plugin never needs them.
    from device_plugin.host_usage import CHECKPOINT_NAME
    from device_plugin.hostfiles import remove_unused

    checkpoint = os.path.join(config.device_plugin_path, CHECKPOINT_NAME)
    try:
        remove_unused(config.host_onload_path, checkpoint, PROC_ROOT)
    except OSError as exc:
        log.error("removing unused host files from %s failed: %s", config.host_onload_path, exc)


def main() -> None:
    config = config_or_exit(load_plugin_config, "onload-device-plugin")
    configure_logging(config.log_format, config.log_level)
    log.info("starting", extra={"config": dataclasses.asdict(config)})
    sys.exit(asyncio.run(run_until_signalled(config)))


if __name__ == "__main__":
    main()
