"""The device plugin's lifecycle: device tracking, NIC monitoring and the serve/register supervisor.

One iteration per kubelet generation: serve on a socket of our own → Register with the kubelet (raced against
the directory, see ``device_plugin.registration``) → wait until our socket is deleted or replaced, or
``kubelet.sock`` is created again (inotify on the directory for create, delete and move events, plus a stat every
few seconds as a safety net) → tear down → repeat. A socket that another plugin instance put in our place means
that instance took over: we stop serving, leave its socket alone and stand by until the name is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import grpc

from device_plugin.allocation import DEVICE_NODE_NAMES
from device_plugin.config import PluginConfig
from device_plugin.devices import (
    HEALTHY,
    build_devices,
    discover_nics,
    loaded_module_version,
    onload_nodes_present,
    versions_match,
)
from device_plugin.metrics import PluginMetrics
from device_plugin.nics import LinkMonitor
from device_plugin.plugin_socket import PluginSocket, SocketIdentity, SocketState, socket_identity
from device_plugin.registration import BACKOFF_INITIAL, BACKOFF_MAX, CONNECT_TIMEOUT, RECHECK_INTERVAL, Registrar
from device_plugin.servicer import RESOURCE_NAME, DeviceState, OnloadDevicePluginServicer
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc
from device_plugin.watch import DirectoryWatch

log = logging.getLogger(__name__)

HEALTH_RECHECK_INTERVAL = 10.0
STOP_GRACE = 0.5
STREAM_GRACE = 1.0
"""Seconds the kubelet has, after accepting a registration, to open ListAndWatch. A kubelet that still streams
from an earlier instance on the same socket name treats a new Register as already done; once that stream ends,
registering again is what connects it to us."""


class DevicePluginService:
    """Runs the plugin until cancelled: device tracking, NIC monitoring and the serve/register loop."""

    def __init__(self, config: PluginConfig, metrics: PluginMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.state = DeviceState()
        self.servicer: OnloadDevicePluginServicer | None = None
        self.socket = PluginSocket(config.socket_path)
        self._links = LinkMonitor(self.refresh_devices)
        self._server: grpc.aio.Server | None = None
        self._registrar: Registrar | None = None
        self._last_health: str | None = None
        self._mismatch: tuple[str, str] | None = None

    @property
    def registrations(self) -> int:
        return self._registrar.registrations if self._registrar is not None else 0

    # Devices -------------------------------------------------------------------------------------------

    def _check_version(self) -> bool:
        """False while the loaded module reports another Onload version than ``config.onload_version``."""
        expected = self.config.onload_version
        loaded = loaded_module_version(self.config.sysfs_root) if expected else None
        mismatch = (expected, loaded) if loaded is not None and not versions_match(expected, loaded) else None
        if mismatch != self._mismatch:
            self.metrics.version_mismatch.clear()
            if mismatch is not None:
                self.metrics.version_mismatch.labels(*mismatch).set(1)
                log.error(
                    "the loaded onload module is version %s but this plugin serves %s: all %s devices are "
                    "Unhealthy until they match",
                    loaded,
                    expected,
                    RESOURCE_NAME,
                )
            else:
                log.info("the loaded onload module matches the served version %s again", expected)
            self._mismatch = mismatch
        return mismatch is None

    def refresh_devices(self) -> None:
        nics = discover_nics(self.config.sysfs_root, self._links.names)
        loaded = onload_nodes_present(self.config.dev_root)
        version_ok = self._check_version()
        devices = build_devices(self.config.max_pods, loaded, nics, self.config.need_nic, version_ok)
        self.metrics.nics.set(len(nics))
        if not self.state.publish(devices):
            return
        health = devices[0].health
        self.metrics.healthy_devices.set(len(devices) if health == HEALTHY else 0)
        if health != self._last_health:
            self.metrics.health_changes.labels(health).inc()
            self._last_health = health
        log.info(
            "devices %s",
            health,
            extra={
                "onload_loaded": loaded,
                "onload_version_ok": version_ok,
                "nics": [{"name": n.name, "driver": n.driver, "vendor": n.vendor, "numa": n.numa_node} for n in nics],
                "need_nic": self.config.need_nic,
            },
        )
        if self.config.need_nic and not nics:
            log.warning("no Onload NIC found and -needNic=true: all %s devices are Unhealthy", RESOURCE_NAME)

    async def _track_devices(self) -> None:
        watch = DirectoryWatch([self.config.dev_root], names=DEVICE_NODE_NAMES)
        try:
            while True:
                self.refresh_devices()
                await watch.wait(HEALTH_RECHECK_INTERVAL)
        finally:
            watch.close()

    # Serving and registration --------------------------------------------------------------------------

    async def _serve(self) -> None:
        os.makedirs(self.config.device_plugin_path, exist_ok=True)
        self.servicer = OnloadDevicePluginServicer(self.config, self.state, self.metrics)
        server = grpc.aio.server()
        pb_grpc.add_DevicePluginServicer_to_server(self.servicer, server)
        self.socket.bind(server)
        self._server = server
        await server.start()
        await self.socket.publish()
        log.info("serving on %s", self.config.socket_path)

    async def _stop_serving(self) -> None:
        if self.servicer is not None:
            self.servicer.close()
        if self._server is not None:
            await self._server.stop(STOP_GRACE)
            self._server = None
        self.socket.remove()

    async def _serve_until_ready(self, watch: DirectoryWatch) -> None:
        delay = BACKOFF_INITIAL
        while True:
            try:
                await self._serve()
                return
            except (grpc.aio.AioRpcError, OSError, RuntimeError) as exc:
                # Expected now and then: a starting kubelet deletes every socket, our temporary one too.
                log.warning("cannot serve on %s, retrying in %.1f s: %s", self.config.socket_path, delay, exc)
                await self._stop_serving()
                await watch.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _stay_registered(self, registrar: Registrar, watch: DirectoryWatch) -> None:
        """Return when our socket is gone or taken or the kubelet restarted; register again meanwhile if needed."""
        assert self.servicer is not None
        while True:
            streams_before = self.servicer.streams_opened
            kubelet = await registrar.register()
            if kubelet is None:
                return
            deadline = time.monotonic() + STREAM_GRACE
            while self._still_current(registrar, kubelet):
                if self.servicer.streams_opened == streams_before and time.monotonic() >= deadline:
                    log.warning("the kubelet accepted the registration but opened no ListAndWatch: registering again")
                    break
                await watch.wait(max(0.0, deadline - time.monotonic()) or RECHECK_INTERVAL)
            else:
                return

    def _still_current(self, registrar: Registrar, kubelet: SocketIdentity) -> bool:
        return self.socket.state() is SocketState.OURS and not registrar.kubelet_replaced(kubelet)

    async def _stand_by(self, watch: DirectoryWatch) -> None:
        """Another instance serves our socket name: wait until the name is free or the kubelet restarts."""
        taken_by = socket_identity(self.config.socket_path)
        log.warning("another plugin instance now serves %s: standing by", self.config.socket_path)
        kubelet = socket_identity(self.config.kubelet_socket_path)
        watch.take_created()
        while socket_identity(self.config.socket_path) == taken_by and taken_by is not None:
            if self.config.kubelet_socket_name in watch.take_created():
                return
            if socket_identity(self.config.kubelet_socket_path) != kubelet:
                return
            await watch.wait(RECHECK_INTERVAL)

    async def _serve_and_register(self) -> None:
        watch = DirectoryWatch(
            [self.config.device_plugin_path], names=(self.config.socket_name, self.config.kubelet_socket_name)
        )
        self._registrar = Registrar(self.config, self.metrics, self.socket, watch)
        try:
            while True:
                await self._serve_until_ready(watch)
                await self._stay_registered(self._registrar, watch)
                taken = self.socket.state() is SocketState.TAKEN
                log.info("kubelet restarted or plugin socket removed or replaced: stopping this generation")
                await self._stop_serving()
                if taken:
                    await self._stand_by(watch)
        finally:
            watch.close()

    async def run(self) -> None:
        """Run until cancelled; on cancellation ListAndWatch streams end, the server stops and the socket goes."""
        tasks = [asyncio.create_task(self._links.run(), name="links")]
        try:
            # Advertise the real NIC picture from the first ListAndWatch message on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._links.ready.wait()
            tasks.append(asyncio.create_task(self._track_devices(), name="devices"))
            self.refresh_devices()
            await self._serve_and_register()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_serving()
