"""``onload-worker``: run Onload's control-plane server inside this container, for any CRI runtime.

It finds its own container id, waits for ``/dev/onload`` (the module may load long after the pod starts), and
writes the module's ``cplane_server_path`` (host crictl) and ``cplane_server_params``
(``exec <id> <ONLOAD_CP_SERVER_PATH>[ <ONLOAD_CP_SERVER_PARAMS>]``). It keeps watching: a reloaded module starts
with default parameters, so they are written again whenever the device node reappears or the values differ.
It runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from device_plugin.config import WorkerConfig, config_or_exit, load_worker_config
from device_plugin.cplane import (
    KNOWN_GOOD_RUNTIMES,
    SERVER_PARAMS_PARAMETER,
    SERVER_PATH_PARAMETER,
    ContainerId,
    ContainerIdError,
    ContainerState,
    apply_parameters,
    container_id_from_proc,
    parameters_applied,
    parse_status_container_id,
    running_container_id,
    server_params,
)
from device_plugin.hostfs import read_text
from device_plugin.logs import configure_logging
from device_plugin.podapi import ApiConfigError, ApiEndpoint, default_endpoint, read_pod
from device_plugin.watch import DirectoryWatch

log = logging.getLogger("onload_worker")

ONLOAD_DEVICE = "onload"
RECHECK_INTERVAL = 5.0
RETRY_INTERVAL = 1.0
API_BACKOFF_MAX = 5.0


def _pod_container_states(endpoint: ApiEndpoint, config: WorkerConfig) -> list[ContainerState]:
    pod = read_pod(endpoint, config.pod_namespace, config.pod_name)
    return [
        ContainerState(
            name=status.get("name", ""),
            container_id=status.get("containerID") or "",
            ready=bool(status.get("ready")),
            started=bool(status.get("started")),
            running=bool((status.get("state") or {}).get("running")),
        )
        for status in (pod.get("status") or {}).get("containerStatuses") or []
    ]


async def _container_id_from_api(config: WorkerConfig) -> ContainerId:
    """Poll our pod until the worker container is ready, started and running (like the Go worker)."""
    if not config.pod_name or not config.pod_namespace:
        raise ContainerIdError("POD_NAME and POD_NAMESPACE are needed to read the container id from the API")
    try:
        endpoint = default_endpoint()
    except ApiConfigError as exc:
        raise ContainerIdError(str(exc)) from exc
    delay = 0.1
    while True:
        try:
            found = running_container_id(
                await asyncio.to_thread(_pod_container_states, endpoint, config), config.container_name
            )
        except ContainerIdError:
            raise
        except Exception as exc:  # the API may be briefly unreachable; keep trying
            log.warning("reading pod %s/%s failed: %s", config.pod_namespace, config.pod_name, exc)
            found = None
        if found is not None:
            return found
        await asyncio.sleep(delay)
        delay = min(delay * 2, API_BACKOFF_MAX)


async def find_container_id(config: WorkerConfig) -> ContainerId:
    if config.container_id:
        if "://" in config.container_id:
            return parse_status_container_id(config.container_id)
        return ContainerId(runtime=None, id=config.container_id)
    if config.container_id_source in ("auto", "proc"):
        found = container_id_from_proc(read_text("/proc/self/cgroup") or "", read_text("/proc/self/mountinfo") or "")
        if found is not None:
            return found
        if config.container_id_source == "proc":
            raise ContainerIdError("no container id in /proc/self/cgroup or the cgroup mounts of /proc/self/mountinfo")
        log.info("no container id in /proc/self; asking the Kubernetes API")
    return await _container_id_from_api(config)


def _apply_if_needed(config: WorkerConfig, params: str) -> bool:
    """Write the parameters if they differ; False if writing failed (retry soon)."""
    if parameters_applied(config.sysfs_root, config.crictl_path, params):
        return True
    try:
        apply_parameters(config.sysfs_root, config.crictl_path, params)
    except OSError as exc:
        log.error("writing Onload module parameters failed: %s", exc)
        return False
    log.info(
        "Onload control-plane parameters written",
        extra={SERVER_PATH_PARAMETER: config.crictl_path, SERVER_PARAMS_PARAMETER: params},
    )
    return True


async def keep_parameters_applied(config: WorkerConfig, params: str) -> None:
    """Write the parameters whenever /dev/onload exists and they differ; never returns."""
    device = os.path.join(config.dev_root, ONLOAD_DEVICE)
    watch = DirectoryWatch([config.dev_root], names=[ONLOAD_DEVICE])
    present: bool | None = None
    try:
        while True:
            exists = os.access(device, os.F_OK)
            if exists != present:
                log.info("%s %s", device, "present" if exists else "not available; waiting for the onload module")
                present = exists
            ok = _apply_if_needed(config, params) if exists else True
            await watch.wait(RECHECK_INTERVAL if ok else RETRY_INTERVAL)
    finally:
        watch.close()


async def run_worker(config: WorkerConfig) -> None:
    container_id = await find_container_id(config)
    if container_id.runtime is not None and container_id.runtime not in KNOWN_GOOD_RUNTIMES:
        log.warning("container runtime %r is untested with crictl exec; continuing", container_id.runtime)
    log.info("worker container id %s", container_id)
    await keep_parameters_applied(config, server_params(container_id, config.cp_server_path, config.cp_server_params))


async def run_until_signalled(config: WorkerConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker = asyncio.create_task(run_worker(config), name="worker")
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({worker, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    stop_task.cancel()
    if worker.done():
        log.error("worker failed: %s", worker.exception())
        return 1
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    log.info("signal received: stopping")
    return 0


def main() -> None:
    config = config_or_exit(load_worker_config, "onload-worker")
    configure_logging(config.log_format, config.log_level)
    sys.exit(asyncio.run(run_until_signalled(config)))


if __name__ == "__main__":
    main()
