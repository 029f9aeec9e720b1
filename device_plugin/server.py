"""The device plugin's gRPC side: the DevicePlugin servicer, registration and the restart supervisor.

Lifecycle (one iteration per kubelet generation):
serve on ``<dir>/<socket>`` → dial it to check it answers → Register with the kubelet (retrying with
back-off while the kubelet is absent) → wait until our socket is deleted or replaced, or ``kubelet.sock`` is
re-created (inotify on the directory, plus a stat every few seconds as a safety net) → tear down → repeat.
Identity of a socket file is its (inode, ctime) pair, so our own unlink/bind never looks like a restart and an
inode number reused by a new kubelet socket is still noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import grpc

from device_plugin.allocation import CDI_QUALIFIED_NAME, DEVICE_NODE_NAMES, cdi_spec, container_edits, write_cdi_spec
from device_plugin.config import PluginConfig
from device_plugin.devices import (
    HEALTHY,
    PluginDevice,
    build_devices,
    device_ids,
    discover_nics,
    onload_nodes_present,
    preferred_allocation,
)
from device_plugin.metrics import PluginMetrics
from device_plugin.nics import LinkMonitor
from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc
from device_plugin.watch import DirectoryWatch

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
RESOURCE_NAME = "amd.com/onload"
# The kubelet dials back with a 10 s timeout inside Register, so our deadline must be longer.
REGISTER_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
SELF_CHECK_TIMEOUT = 10.0
SOCKET_RECHECK_INTERVAL = 5.0
HEALTH_RECHECK_INTERVAL = 10.0
REGISTER_BACKOFF_MAX = 5.0
STOP_GRACE = 0.5
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

SocketIdentity = tuple[int, int]


def socket_identity(path: str) -> SocketIdentity | None:
    try:
        stat = os.lstat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_ctime_ns)


class DeviceState:
    """The current device list, with a version that changes whenever the list does."""

    def __init__(self) -> None:
        self.devices: tuple[PluginDevice, ...] = ()
        self.version = 0
        self._changed = asyncio.Event()

    def publish(self, devices: tuple[PluginDevice, ...]) -> bool:
        if devices == self.devices:
            return False
        self.devices = devices
        self.version += 1
        self.wake()
        return True

    def wake(self) -> None:
        """Wake every waiter so it re-checks its condition."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()


def to_proto(devices: tuple[PluginDevice, ...]) -> pb.ListAndWatchResponse:
    return pb.ListAndWatchResponse(
        devices=[
            pb.Device(
                ID=device.id,
                health=device.health,
                topology=pb.TopologyInfo(nodes=[pb.NUMANode(ID=device.numa_node)])
                if device.numa_node is not None
                else None,
            )
            for device in devices
        ]
    )


class OnloadDevicePluginServicer(pb_grpc.DevicePluginServicer):
    """Serves one socket generation; :meth:`close` ends its ListAndWatch streams normally."""

    def __init__(self, config: PluginConfig, state: DeviceState, metrics: PluginMetrics) -> None:
        self._config = config
        self._state = state
        self._metrics = metrics
        self._known_ids = frozenset(device_ids(config.max_pods))
        self._closed = False
        self.active_streams = 0

    def close(self) -> None:
        self._closed = True
        self._state.wake()

    async def GetDevicePluginOptions(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[pb.Empty, pb.DevicePluginOptions]
    ) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)

    async def ListAndWatch(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[pb.Empty, pb.ListAndWatchResponse]
    ) -> AsyncIterator[pb.ListAndWatchResponse]:
        """Send the whole list now and after every change; return only when this server is closed.

        When the kubelet goes away, grpc cancels this coroutine, which runs the ``finally``.
        """
        self.active_streams += 1
        sent = -1
        try:
            while not self._closed:
                if self._state.version != sent:
                    sent = self._state.version
                    yield to_proto(self._state.devices)
                    continue
                await self._state.wait_changed()
        finally:
            self.active_streams -= 1

    async def GetPreferredAllocation(
        self,
        request: pb.PreferredAllocationRequest,
        context: grpc.aio.ServicerContext[pb.PreferredAllocationRequest, pb.PreferredAllocationResponse],
    ) -> pb.PreferredAllocationResponse:
        numa_of = {device.id: device.numa_node for device in self._state.devices}
        return pb.PreferredAllocationResponse(
            container_responses=[
                pb.ContainerPreferredAllocationResponse(
                    deviceIDs=preferred_allocation(
                        list(req.available_deviceIDs), list(req.must_include_deviceIDs), req.allocation_size, numa_of
                    )
                )
                for req in request.container_requests
            ]
        )

    async def Allocate(
        self, request: pb.AllocateRequest, context: grpc.aio.ServicerContext[pb.AllocateRequest, pb.AllocateResponse]
    ) -> pb.AllocateResponse:
        unknown = sorted({i for req in request.container_requests for i in req.devices_ids} - self._known_ids)
        if unknown:
            self._metrics.allocations.labels("invalid").inc(len(request.container_requests))
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown {RESOURCE_NAME} device ids {unknown}: this plugin advertises "
                f"sfc-0 to sfc-{self._config.max_pods - 1}",
            )
        response = pb.AllocateResponse(
            container_responses=[self._container_response() for _ in request.container_requests]
        )
        self._metrics.allocations.labels("ok").inc(len(request.container_requests))
        return response

    def _container_response(self) -> pb.ContainerAllocateResponse:
        edits = container_edits(self._config)
        if self._config.cdi:
            write_cdi_spec(self._config.cdi_spec_dir, cdi_spec(edits))
            return pb.ContainerAllocateResponse(cdi_devices=[pb.CDIDevice(name=CDI_QUALIFIED_NAME)])
        return pb.ContainerAllocateResponse(
            envs=edits.envs,
            mounts=[
                pb.Mount(container_path=m.container_path, host_path=m.host_path, read_only=m.read_only)
                for m in edits.mounts
            ],
            devices=[
                pb.DeviceSpec(container_path=d.container_path, host_path=d.host_path, permissions=d.permissions)
                for d in edits.device_nodes
            ],
        )

    async def PreStartContainer(
        self,
        request: pb.PreStartContainerRequest,
        context: grpc.aio.ServicerContext[pb.PreStartContainerRequest, pb.PreStartContainerResponse],
    ) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()


class DevicePluginService:
    """Runs the plugin until cancelled: device tracking, NIC monitoring and the serve/register loop."""

    def __init__(self, config: PluginConfig, metrics: PluginMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.state = DeviceState()
        self.registrations = 0
        self.servicer: OnloadDevicePluginServicer | None = None
        self._links = LinkMonitor(self.refresh_devices)
        self._server: grpc.aio.Server | None = None
        self._socket: SocketIdentity | None = None
        self._last_health: str | None = None

    # Devices -------------------------------------------------------------------------------------------

    def refresh_devices(self) -> None:
        nics = discover_nics(self.config.sysfs_root, self._links.names)
        loaded = onload_nodes_present(self.config.dev_root)
        devices = build_devices(self.config.max_pods, loaded, nics, self.config.need_nic)
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
        path = self.config.socket_path
        os.makedirs(self.config.device_plugin_path, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.servicer = OnloadDevicePluginServicer(self.config, self.state, self.metrics)
        server = grpc.aio.server()
        pb_grpc.add_DevicePluginServicer_to_server(self.servicer, server)
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        self._server = server
        self._socket = socket_identity(path)
        await self._self_check()
        log.info("serving on %s", path)

    async def _self_check(self) -> None:
        async with grpc.aio.insecure_channel(f"unix:{self.config.socket_path}") as channel:
            await pb_grpc.DevicePluginStub(channel).GetDevicePluginOptions(
                pb.Empty(), timeout=SELF_CHECK_TIMEOUT, wait_for_ready=True
            )

    async def _stop_serving(self) -> None:
        if self.servicer is not None:
            self.servicer.close()
        if self._server is not None:
            await self._server.stop(STOP_GRACE)
            self._server = None
        if self._socket is not None and socket_identity(self.config.socket_path) == self._socket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.socket_path)
        self._socket = None

    async def _register_once(self) -> None:
        request = pb.RegisterRequest(
            version=API_VERSION,
            endpoint=self.config.socket_name,
            resource_name=RESOURCE_NAME,
            options=pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True),
        )
        async with grpc.aio.insecure_channel(
            f"unix:{self.config.kubelet_socket_path}", options=_CHANNEL_OPTIONS
        ) as channel:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await channel.channel_ready()
            await pb_grpc.RegistrationStub(channel).Register(request, timeout=REGISTER_TIMEOUT)

    def _own_socket_intact(self) -> bool:
        return self._socket is not None and socket_identity(self.config.socket_path) == self._socket

    async def _register(self, watch: DirectoryWatch) -> SocketIdentity | None:
        """Register, retrying while the kubelet is absent or refuses; None if our socket went away meanwhile."""
        delay = 0.1
        waiting_logged = False
        while self._own_socket_intact():
            kubelet = socket_identity(self.config.kubelet_socket_path)
            if kubelet is not None:
                try:
                    await self._register_once()
                except (grpc.aio.AioRpcError, TimeoutError) as exc:
                    self.metrics.registrations.labels("error").inc()
                    detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else "kubelet did not answer"
                    log.warning("registration failed, retrying in %.1f s: %s", delay, detail)
                else:
                    self.metrics.registrations.labels("ok").inc()
                    self.registrations += 1
                    log.info(
                        "registered %s with the kubelet", RESOURCE_NAME, extra={"endpoint": self.config.socket_name}
                    )
                    return kubelet
            elif not waiting_logged:
                log.info("waiting for the kubelet socket %s", self.config.kubelet_socket_path)
                waiting_logged = True
            await watch.wait(delay)
            delay = min(delay * 2, REGISTER_BACKOFF_MAX)
        return None

    async def _serve_and_register(self) -> None:
        watch = DirectoryWatch(
            [self.config.device_plugin_path], names=(self.config.socket_name, self.config.kubelet_socket_name)
        )
        try:
            delay = 0.1
            while True:
                try:
                    await self._serve()
                except (grpc.aio.AioRpcError, OSError, RuntimeError) as exc:
                    log.error("cannot serve on %s, retrying in %.1f s: %s", self.config.socket_path, delay, exc)
                    await self._stop_serving()
                    await watch.wait(delay)
                    delay = min(delay * 2, REGISTER_BACKOFF_MAX)
                    continue
                delay = 0.1
                kubelet = await self._register(watch)
                while (
                    kubelet is not None
                    and self._own_socket_intact()
                    and socket_identity(self.config.kubelet_socket_path) == kubelet
                ):
                    await watch.wait(SOCKET_RECHECK_INTERVAL)
                log.info("kubelet restarted or plugin socket removed: serving and registering again")
                await self._stop_serving()
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
