"""Kubelet events that must never leave the node without ``amd.com/onload``: a crash-looping kubelet, metadata
changes on the sockets, and a second plugin instance that overlaps the first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from functools import partial

import pytest

from device_plugin.lifecycle import DevicePluginService
from device_plugin.metrics import PluginMetrics
from device_plugin.plugin_socket import socket_identity
from tests.device_plugin.dp_helpers import HostTree, StartPlugin, wait_for
from tests.device_plugin.fake_kubelet import FakeKubelet

PLUGIN_SOCKET = "onload.sock"
CRASH_LOOP_ROUNDS = 100


def _healthy_for(kubelet: FakeKubelet, generation: int) -> bool:
    return (
        kubelet.listed_generations[-1:] == [generation]
        and kubelet.streaming(PLUGIN_SOCKET)
        and {device.health for device in kubelet.latest} == {"Healthy"}
    )


async def test_crash_looping_kubelet_never_leaves_registration_on_a_dead_socket(
    host: HostTree, start_plugin: StartPlugin
) -> None:
    """Each round: kubelets that die 0 to 50 ms after they listen (leaving kubelet.sock behind), at random gaps,
    then one that stays. The plugin is registered and streaming Healthy devices to that one within 1 s of its
    listen, although a kubelet that got a Register just before dying sends the plugin's next Register to a
    kubelet that dials the socket it has just deleted for 10 s."""
    host.load_module()
    kubelet = FakeKubelet(host.plugin_dir)
    chance = random.Random(20261203)
    await start_plugin()
    try:
        for round_ in range(CRASH_LOOP_ROUNDS):
            for _ in range(chance.randint(1, 3)):
                await kubelet.start()
                await asyncio.sleep(chance.uniform(0, 0.05))  # the crashing kubelet's lifetime
                await kubelet.crash()
                await asyncio.sleep(chance.uniform(0, 0.02))  # until the next kubelet starts
            await kubelet.start()
            await wait_for(
                partial(_healthy_for, kubelet, kubelet.generation),
                deadline=1.0,
                message=f"registration in round {round_}",
            )
            await kubelet.crash()
    finally:
        await kubelet.stop()
    # One registration per kubelet that lived long enough to answer, and one for every kubelet that stayed.
    per_generation = Counter(kubelet.registered_generations)
    assert set(per_generation.values()) == {1}
    assert len(per_generation) >= CRASH_LOOP_ROUNDS


@pytest.mark.parametrize("target", ["plugin socket", "kubelet socket", "directory"])
async def test_metadata_changes_are_not_kubelet_restarts(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin, target: str
) -> None:
    host.load_module()
    service = await start_plugin()
    await wait_for(lambda: _healthy_for(kubelet, kubelet.generation), message="first registration")
    path = {
        "plugin socket": os.path.join(host.plugin_dir, PLUGIN_SOCKET),
        "kubelet socket": kubelet.socket_path,
        "directory": host.plugin_dir,
    }[target]
    sockets = [os.path.join(host.plugin_dir, PLUGIN_SOCKET), kubelet.socket_path]
    before = [socket_identity(socket) for socket in sockets]
    mode = os.stat(path).st_mode & 0o7777
    for _ in range(3):  # what chmod, chown, restorecon and xattr agents do
        os.chmod(path, 0o700)
        os.chown(path, 1000, 1000)
        os.utime(path)
        if target == "directory":  # user xattrs exist on files and directories, not on sockets
            os.setxattr(path, "user.agent", b"seen")
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    assert [socket_identity(socket) for socket in sockets] == before
    # Nothing reacts: no stream ends and no registration follows (a reaction comes within milliseconds).
    with pytest.raises(AssertionError, match="timed out"):
        await wait_for(lambda: kubelet.stream_ended > 0 or len(kubelet.registrations) > 1, deadline=0.5)
    assert service.registrations == 1
    assert service.servicer is not None
    assert service.servicer.active_streams == 1


async def test_stopping_an_overlapped_instance_leaves_the_new_one_registered(
    host: HostTree, kubelet: FakeKubelet
) -> None:
    host.load_module()
    old = DevicePluginService(host.config(), PluginMetrics())
    old_task = asyncio.create_task(old.run())
    new = DevicePluginService(host.config(), PluginMetrics())
    new_task: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: old.registrations == 1 and kubelet.streaming(PLUGIN_SOCKET), message="old registered")
        new_task = asyncio.create_task(new.run())
        # The kubelet still streams from the old instance, so the new Register changes nothing until the old one
        # sees its socket replaced, stands by and ends its stream; the new one then registers again.
        await wait_for(
            lambda: new.servicer is not None and new.servicer.active_streams == 1,
            message="the kubelet streaming from the new instance",
        )
        assert old.servicer is not None
        assert old.servicer.active_streams == 0
        registrations = len(kubelet.registrations)
        new_socket = socket_identity(os.path.join(host.plugin_dir, PLUGIN_SOCKET))
        assert new_socket == new.socket.identity
        old_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await old_task
        # The old instance left the new one's socket in place, so the kubelet keeps its stream and needs no
        # new registration.
        assert socket_identity(os.path.join(host.plugin_dir, PLUGIN_SOCKET)) == new_socket
        assert len(kubelet.registrations) == registrations
        assert new.servicer is not None
        assert new.servicer.active_streams == 1
        assert kubelet.streaming(PLUGIN_SOCKET)
        assert {device.health for device in kubelet.latest} == {"Healthy"}
    finally:
        for task in (old_task, new_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
