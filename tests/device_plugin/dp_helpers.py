"""Test helpers for the device plugin: host trees, polling with a deadline, links and plugin processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from device_plugin.config import PluginConfig
from device_plugin.lifecycle import DevicePluginService

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


_LINK_COMMANDS = {
    "add": lambda op: ["add", op["ifname"], "type", "veth", "peer", "name", op["peer"]],
    "rename": lambda op: ["set", op["ifname"], "name", op["new"]],
    "del": lambda op: ["del", op["ifname"]],
}


async def change_links(namespace: str, **operation: str) -> None:
    """Add, rename or delete a veth link in ``namespace`` with iproute2."""
    command = _LINK_COMMANDS[operation["op"]](operation)
    process = await asyncio.create_subprocess_exec("ip", "-n", namespace, "link", *command, stderr=subprocess.PIPE)
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()


async def start_plugin_process(
    host: HostTree, *args: str, namespace: str | None = None, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
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
        env={**os.environ, **(env or {})},
    )


async def stop_process(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, then the exit code and everything logged."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()
