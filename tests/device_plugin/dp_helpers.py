"""Test helpers for the device plugin: polling with a deadline and a kubelet played over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from device_plugin.config import PluginConfig
from device_plugin.server import DevicePluginService
from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc

KUBELET_SOCKET = "kubelet.sock"
# Runs inside the test's network namespace (via `ip netns exec`), so pyroute2 needs no fork-based netns support,
# which is unsafe in a process that runs gRPC threads.
_LINK_SCRIPT = """
import json, sys
from pyroute2 import IPRoute
op = json.loads(sys.argv[1])
with IPRoute() as ipr:
    if op["op"] == "add":
        ipr.link("add", ifname=op["ifname"], kind="veth", peer=op["peer"])
    elif op["op"] == "rename":
        ipr.link("set", index=ipr.link_lookup(ifname=op["ifname"])[0], ifname=op["new"])
    elif op["op"] == "del":
        ipr.link("del", index=ipr.link_lookup(ifname=op["ifname"])[0])
"""
StartPlugin = Callable[..., Awaitable[DevicePluginService]]


@dataclass
class HostTree:
    """Temporary stand-ins for the host paths the plugin reads."""

    plugin_dir: str
    dev: str
    sysfs: str
    onload: str
    cdi: str

    def load_module(self, with_sfc_char: bool = False) -> None:
        for name in ("onload", "onload_epoll") + (("sfc_char",) if with_sfc_char else ()):
            open(os.path.join(self.dev, name), "w").close()

    def unload_module(self) -> None:
        for name in ("onload", "onload_epoll", "sfc_char"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dev, name))

    def install_userland(self, libraries: tuple[str, ...] = ("libonload.so", "libonload_ext.so")) -> None:
        lib = os.path.join(self.onload, "usr", "lib64")
        os.makedirs(lib, exist_ok=True)
        os.makedirs(os.path.join(self.onload, "usr", "bin"), exist_ok=True)
        for name in libraries:
            open(os.path.join(lib, name), "w").close()
        open(os.path.join(self.onload, "usr", "bin", "onload"), "w").close()

    def add_nic(self, ifname: str, vendor: str = "0x1924", driver: str = "sfc", numa: str | None = "0") -> None:
        device = os.path.join(self.sysfs, "class", "net", ifname, "device")
        os.makedirs(device, exist_ok=True)
        with open(os.path.join(device, "vendor"), "w") as handle:
            handle.write(vendor + "\n")
        if numa is not None:
            with open(os.path.join(device, "numa_node"), "w") as handle:
                handle.write(numa + "\n")
        driver_dir = os.path.join(self.sysfs, "bus", "pci", "drivers", driver)
        os.makedirs(driver_dir, exist_ok=True)
        os.symlink(driver_dir, os.path.join(device, "driver"))

    def config(self, **overrides: Any) -> PluginConfig:
        values: dict[str, Any] = {
            "device_plugin_path": self.plugin_dir,
            "dev_root": self.dev,
            "sysfs_root": self.sysfs,
            "host_onload_path": self.onload,
            "cdi_spec_dir": self.cdi,
            "need_nic": False,
            "metrics_port": 0,
            "max_pods": 4,
        }
        values.update(overrides)
        return PluginConfig(**values)


async def wait_for(predicate: Callable[[], bool], deadline: float = 5.0, message: str = "condition") -> float:
    """Poll ``predicate`` until true; returns the seconds it took. Fails the test after ``deadline`` seconds."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > deadline:
            raise AssertionError(f"timed out after {deadline} s waiting for {message}")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def exists(path: str) -> bool:
    return os.path.lexists(path)


def touch(path: str) -> None:
    with open(path, "w"):
        pass


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _is_extended_resource_name(name: str) -> bool:
    """The kubelet's IsExtendedResourceName check, reduced to what matters here."""
    if "/" not in name or name.startswith("requests."):
        return False
    domain = name.split("/", 1)[0]
    return bool(domain) and domain != "kubernetes.io" and not domain.endswith(".kubernetes.io")


class FakeKubelet(pb_grpc.RegistrationServicer):
    """Serves Registration on ``<dir>/kubelet.sock`` and behaves like the kubelet's device manager.

    Register checks the version and resource name, dials the plugin's endpoint back and calls
    GetDevicePluginOptions (failing Register if that fails), then consumes ListAndWatch like the kubelet does.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.registrations: list[pb.RegisterRequest] = []
        self.options: list[pb.DevicePluginOptions] = []
        self.deadlines: list[float | None] = []
        self.updates: list[list[pb.Device]] = []
        self.stream_ended = 0
        self.reject_next: str | None = None
        self._server: grpc.aio.Server | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def socket_path(self) -> str:
        return os.path.join(self.directory, KUBELET_SOCKET)

    @property
    def latest(self) -> list[pb.Device]:
        return self.updates[-1] if self.updates else []

    def plugin_channel(self) -> grpc.aio.Channel:
        endpoint = self.registrations[-1].endpoint
        channel = grpc.aio.insecure_channel(f"unix:{os.path.join(self.directory, endpoint)}")
        self._channels.append(channel)
        return channel

    async def start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.socket_path}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers.clear()
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    async def restart(self) -> None:
        """What a kubelet restart does to the directory: every socket is deleted, then kubelet.sock returns."""
        await self.stop()
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            with contextlib.suppress(FileNotFoundError):  # the plugin may be replacing its socket right now
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
        await self.start()

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext[pb.RegisterRequest, pb.Empty]
    ) -> pb.Empty:
        self.deadlines.append(context.time_remaining())
        if request.version != "v1beta1":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version!r}")
        if not _is_extended_resource_name(request.resource_name):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad resource name {request.resource_name!r}")
        if self.reject_next is not None:
            reason, self.reject_next = self.reject_next, None
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, reason)
        channel = grpc.aio.insecure_channel(f"unix:{os.path.join(self.directory, request.endpoint)}")
        self._channels.append(channel)
        stub = pb_grpc.DevicePluginStub(channel)
        try:
            options = await stub.GetDevicePluginOptions(pb.Empty(), timeout=10, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, f"dialing back the plugin failed: {exc.details()}")
        self.options.append(options)
        self.registrations.append(request)
        self._watchers.append(asyncio.create_task(self._list_and_watch(stub)))
        return pb.Empty()

    async def _list_and_watch(self, stub: pb_grpc.DevicePluginAsyncStub) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in stub.ListAndWatch(pb.Empty()):
                self.updates.append(list(response.devices))
        self.stream_ended += 1


async def change_links(namespace: str, **operation: str) -> None:
    """Add, rename or delete a veth link in ``namespace`` with pyroute2."""
    process = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        namespace,
        sys.executable,
        "-c",
        _LINK_SCRIPT,
        json.dumps(operation),
        stderr=subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()


async def start_plugin_process(host: HostTree, *args: str, namespace: str | None = None) -> asyncio.subprocess.Process:
    """The real ``onload-device-plugin`` entry point as a child process, optionally in a network namespace."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "device_plugin",
        f"-devicePluginPath={host.plugin_dir}",
        f"-devRoot={host.dev}",
        f"-sysfsRoot={host.sysfs}",
        f"-hostOnloadPath={host.onload}",
        f"-cdiSpecDir={host.cdi}",
        *args,
        stderr=subprocess.PIPE,
    )


async def stop_process(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, then the exit code and everything logged."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()
