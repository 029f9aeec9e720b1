"""The DevicePlugin gRPC servicer: the device list streamed by ListAndWatch, and the Allocate answers.

One servicer serves one socket generation; the lifecycle (``device_plugin.lifecycle``) creates it, serves it and
closes it. It does no I/O of its own beyond what Allocate resolves on the host.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import grpc

from device_plugin.allocation import (
    CDI_QUALIFIED_NAME,
    CDI_SPEC_FILE,
    HostFiles,
    cdi_spec,
    container_edits,
    observe_host,
    write_cdi_spec,
)
from device_plugin.config import PluginConfig
from device_plugin.devices import PluginDevice, device_ids, preferred_allocation
from device_plugin.metrics import PluginMetrics
from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc

RESOURCE_NAME = "amd.com/onload"
PLUGIN_OPTIONS = pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)


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
        self._answer: tuple[HostFiles, pb.ContainerAllocateResponse] | None = None
        """The last answer and the host files it was built from: reused while the host shows the same files."""
        self.active_streams = 0
        self.streams_opened = 0
        """ListAndWatch calls received so far: the kubelet opens one right after it accepts a registration."""

    def close(self) -> None:
        self._closed = True
        self._state.wake()

    async def GetDevicePluginOptions(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[pb.Empty, pb.DevicePluginOptions]
    ) -> pb.DevicePluginOptions:
        return PLUGIN_OPTIONS

    async def ListAndWatch(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[pb.Empty, pb.ListAndWatchResponse]
    ) -> AsyncIterator[pb.ListAndWatchResponse]:
        """Send the whole list now and after every change; return only when this server is closed.

        When the kubelet goes away, grpc cancels this coroutine, which runs the ``finally``.
        """
        self.active_streams += 1
        self.streams_opened += 1
        self._state.wake()
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
        """The plain devices, mounts and environment, plus the CDI device name in CDI mode.

        Both, so that a kubelet without ``DevicePluginCDIDevices`` or a runtime without CDI still gets everything;
        where CDI is applied too, it repeats the same edits, which changes nothing. The host is looked at on
        every call (the module and the files may change at any time); only the answer built from it is reused.
        """
        host = observe_host(self._config)
        if self._answer is not None and self._answer[0] == host:
            if self._config.cdi and not os.path.exists(os.path.join(self._config.cdi_spec_dir, CDI_SPEC_FILE)):
                write_cdi_spec(self._config.cdi_spec_dir, cdi_spec(container_edits(self._config, host)))
            return self._answer[1]
        edits = container_edits(self._config, host)
        cdi_devices = []
        if self._config.cdi:
            write_cdi_spec(self._config.cdi_spec_dir, cdi_spec(edits))
            cdi_devices.append(pb.CDIDevice(name=CDI_QUALIFIED_NAME))
        answer = pb.ContainerAllocateResponse(
            envs=edits.envs,
            mounts=[
                pb.Mount(container_path=m.container_path, host_path=m.host_path, read_only=m.read_only)
                for m in edits.mounts
            ],
            devices=[
                pb.DeviceSpec(container_path=d.container_path, host_path=d.host_path, permissions=d.permissions)
                for d in edits.device_nodes
            ],
            cdi_devices=cdi_devices,
        )
        self._answer = (host, answer)
        return answer

    async def PreStartContainer(
        self,
        request: pb.PreStartContainerRequest,
        context: grpc.aio.ServicerContext[pb.PreStartContainerRequest, pb.PreStartContainerResponse],
    ) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()
