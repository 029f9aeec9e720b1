"""A kubelet device manager played over real gRPC on unix sockets, faithful where the plugin's behaviour depends
on it: directory clean-up at start, the blocking dial back inside Register, one client per endpoint, crashes
that leave ``kubelet.sock`` behind, and the checkpoint of Allocate answers that container restarts reuse."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import stat

import grpc

from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc

KUBELET_SOCKET = "kubelet.sock"
CHECKPOINT = "kubelet_internal_checkpoint"
DIAL_TIMEOUT = 10.0
"""The kubelet's dial back to a registering plugin blocks until connected, for at most this long."""


def _is_extended_resource_name(name: str) -> bool:
    """The kubelet's IsExtendedResourceName check, reduced to what matters here."""
    if "/" not in name or name.startswith("requests."):
        return False
    domain = name.split("/", 1)[0]
    return bool(domain) and domain != "kubernetes.io" and not domain.endswith(".kubernetes.io")


class FakeKubelet(pb_grpc.RegistrationServicer):
    """Serves Registration on ``<dir>/kubelet.sock`` and behaves like the kubelet's device manager.

    Register checks the version and resource name; while a ListAndWatch stream from the same endpoint is open it
    does nothing more (the kubelet keeps a connected client); otherwise it dials the endpoint back, blocking until
    connected for at most ``dial_timeout`` (as the kubelet does, even when the socket does not exist), calls
    GetDevicePluginOptions, fails Register if any of that fails, then consumes ListAndWatch.
    """

    def __init__(self, directory: str, dial_timeout: float = DIAL_TIMEOUT) -> None:
        self.directory = directory
        self.dial_timeout = dial_timeout
        self.generation = 0
        """Incremented by every start: one kubelet process."""
        self.registrations: list[pb.RegisterRequest] = []
        self.registered_generations: list[int] = []
        self.options: list[pb.DevicePluginOptions] = []
        self.deadlines: list[float | None] = []
        self.updates: list[list[pb.Device]] = []
        self.listed_generations: list[int] = []
        """The generation that received each entry of ``updates``."""
        self.stream_ended = 0
        self.reject_next: str | None = None
        self._server: grpc.aio.Server | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._checkpoint: list[dict[str, object]] = []

    @property
    def socket_path(self) -> str:
        return os.path.join(self.directory, KUBELET_SOCKET)

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.directory, CHECKPOINT)

    @property
    def latest(self) -> list[pb.Device]:
        return self.updates[-1] if self.updates else []

    def streaming(self, endpoint: str) -> bool:
        task = self._streams.get(endpoint)
        return task is not None and not task.done()

    def plugin_channel(self) -> grpc.aio.Channel:
        endpoint = self.registrations[-1].endpoint
        channel = grpc.aio.insecure_channel(f"unix:{os.path.join(self.directory, endpoint)}")
        self._channels.append(channel)
        return channel

    async def start(self, clean_directory: bool = True) -> None:
        """Start a kubelet: like the real one, first delete every socket in the directory, then listen."""
        if clean_directory:
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                with contextlib.suppress(FileNotFoundError):  # the plugin may be replacing its socket right now
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)
        self.generation += 1
        server = grpc.aio.server()
        pb_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.socket_path}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """A clean exit: streams and connections end, and grpc removes kubelet.sock."""
        for task in self._streams.values():
            task.cancel()
        await asyncio.gather(*self._streams.values(), return_exceptions=True)
        self._streams.clear()
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    async def crash(self) -> None:
        """The process dies: its connections drop, but kubelet.sock stays behind with nobody listening."""
        await self.stop()
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        dead.bind(self.socket_path)
        dead.close()

    async def restart(self) -> None:
        """A kubelet restart: the old one exits, the new one deletes every socket, then listens."""
        await self.stop()
        await self.start()

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext[pb.RegisterRequest, pb.Empty]
    ) -> pb.Empty:
        generation = self.generation
        self.deadlines.append(context.time_remaining())
        if request.version != "v1beta1":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version!r}")
        if not _is_extended_resource_name(request.resource_name):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad resource name {request.resource_name!r}")
        if self.reject_next is not None:
            reason, self.reject_next = self.reject_next, None
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, reason)
        if self.streaming(request.endpoint):
            return pb.Empty()  # "client already connected with the same socket path"
        channel = grpc.aio.insecure_channel(f"unix:{os.path.join(self.directory, request.endpoint)}")
        self._channels.append(channel)
        try:
            async with asyncio.timeout(self.dial_timeout):
                await channel.channel_ready()
        except TimeoutError:
            await context.abort(grpc.StatusCode.UNKNOWN, f"dialing back {request.endpoint} timed out")
        stub = pb_grpc.DevicePluginStub(channel)
        try:
            options = await stub.GetDevicePluginOptions(pb.Empty(), timeout=self.dial_timeout)
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, f"dialing back the plugin failed: {exc.details()}")
        self.options.append(options)
        self.registrations.append(request)
        self.registered_generations.append(generation)
        self._streams[request.endpoint] = asyncio.create_task(self._list_and_watch(stub, generation))
        return pb.Empty()

    async def _list_and_watch(self, stub: pb_grpc.DevicePluginAsyncStub, generation: int) -> None:
        # UsageError: this kubelet stopped (closing its channels) between accepting and streaming.
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            async for response in stub.ListAndWatch(pb.Empty()):
                self.updates.append(list(response.devices))
                self.listed_generations.append(generation)
        self.stream_ended += 1

    async def admit(self, pod_uid: str, container: str, device_id: str) -> pb.ContainerAllocateResponse:
        """Admit a container: Allocate one device and checkpoint the answer, as the device manager does."""
        stub = pb_grpc.DevicePluginStub(self.plugin_channel())
        response = await stub.Allocate(
            pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[device_id])])
        )
        answer = response.container_responses[0]
        self._checkpoint.append(
            {
                "PodUID": pod_uid,
                "ContainerName": container,
                "ResourceName": self.registrations[-1].resource_name,
                "DeviceIDs": {"-1": [device_id]},
                "AllocResp": base64.b64encode(answer.SerializeToString()).decode(),
            }
        )
        self._write_checkpoint()
        return answer

    def cached_answer(self, pod_uid: str, container: str) -> pb.ContainerAllocateResponse:
        """What a restarting container gets: the checkpointed answer, without calling the plugin."""
        for entry in self._checkpoint:
            if (entry["PodUID"], entry["ContainerName"]) == (pod_uid, container):
                return pb.ContainerAllocateResponse.FromString(base64.b64decode(str(entry["AllocResp"])))
        raise KeyError((pod_uid, container))

    def forget_pod(self, pod_uid: str) -> None:
        """The pod is gone: the kubelet drops its entries from the checkpoint."""
        self._checkpoint = [entry for entry in self._checkpoint if entry["PodUID"] != pod_uid]
        self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        data = {"Data": {"PodDeviceEntries": self._checkpoint, "RegisteredDevices": {}}, "Checksum": 0}
        with open(self.checkpoint_path, "w", encoding="utf-8") as out:
            json.dump(data, out)
