"""Registration and restart behaviour against a kubelet played over real gRPC on unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from device_plugin.lifecycle import DevicePluginService
from device_plugin.metrics import PluginMetrics
from device_plugin.servicer import RESOURCE_NAME
from tests.device_plugin.dp_helpers import HostTree, StartPlugin, exists, wait_for
from tests.device_plugin.fake_kubelet import FakeKubelet


async def test_registers_with_version_resource_and_endpoint(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    host.load_module()
    await start_plugin()
    await wait_for(lambda: len(kubelet.registrations) == 1, message="registration")
    request = kubelet.registrations[0]
    assert request.version == "v1beta1"
    assert request.resource_name == RESOURCE_NAME
    assert request.endpoint == "onload.sock"
    assert request.options.get_preferred_allocation_available
    assert not request.options.pre_start_required
    # Longer than the kubelet's own 10 s dial back to the plugin.
    assert (kubelet.deadlines[0] or 0) > 14
    # The kubelet dialled back and got the same options.
    assert kubelet.options[0].get_preferred_allocation_available
    await wait_for(lambda: len(kubelet.latest) == 4, message="device list")
    assert [d.ID for d in kubelet.latest] == ["sfc-0", "sfc-1", "sfc-2", "sfc-3"]
    assert {d.health for d in kubelet.latest} == {"Healthy"}


async def test_waits_for_an_absent_kubelet_without_exiting(host: HostTree, start_plugin: StartPlugin) -> None:
    service = await start_plugin()
    socket = os.path.join(host.plugin_dir, "onload.sock")
    await wait_for(lambda: exists(socket), message="plugin socket")
    kubelet = FakeKubelet(host.plugin_dir)
    await kubelet.start()
    try:
        took = await wait_for(lambda: service.registrations == 1, message="late registration")
        assert took < 1.0
        assert len(kubelet.registrations) == 1
    finally:
        await kubelet.stop()


async def test_retries_when_the_kubelet_rejects_registration(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    kubelet.reject_next = "device manager not ready"
    service = await start_plugin()
    await wait_for(lambda: service.registrations == 1, message="registration after a rejection")
    assert len(kubelet.registrations) == 1
    sample = service.metrics.registry.get_sample_value
    assert sample("onload_device_plugin_registrations_total", {"result": "error"}) == 1
    assert sample("onload_device_plugin_registrations_total", {"result": "ok"}) == 1


async def test_kubelet_restart_fifty_times_never_loses_the_registration(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    host.load_module()
    service = await start_plugin()
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    slowest = 0.0
    for restart in range(1, 51):
        await kubelet.restart()
        # Re-registered and the new kubelet received the device list over its own ListAndWatch.
        took = await wait_for(
            _registered_and_listed(kubelet, restart + 1), deadline=5.0, message=f"re-registration {restart}"
        )
        slowest = max(slowest, took)
        assert exists(os.path.join(host.plugin_dir, "onload.sock"))
    assert service.registrations == 51
    assert slowest < 1.0, f"slowest re-registration took {slowest:.3f} s"
    # Every registration got the whole healthy device list.
    assert {d.health for d in kubelet.latest} == {"Healthy"}


async def test_replaced_kubelet_socket_alone_triggers_registration(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    """A kubelet that comes back without deleting our socket is still noticed, even when the new kubelet.sock
    gets the inode number of the old one (the file system often reuses it at once): its creation is the signal."""
    await start_plugin()
    await wait_for(lambda: len(kubelet.registrations) == 1, message="first registration")
    await kubelet.stop()  # grpc removes kubelet.sock when its server stops
    assert not exists(kubelet.socket_path)
    await kubelet.start(clean_directory=False)
    await wait_for(lambda: len(kubelet.registrations) == 2, deadline=1.0, message="re-registration")


async def test_list_and_watch_ends_when_the_kubelet_goes_away(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    service = await start_plugin()
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    assert service.servicer is not None
    await wait_for(lambda: service.servicer is not None and service.servicer.active_streams == 1)
    await kubelet.stop()
    await wait_for(lambda: service.servicer is not None and service.servicer.active_streams == 0, message="stream end")


async def test_stopping_the_plugin_ends_streams_and_removes_the_socket(host: HostTree, kubelet: FakeKubelet) -> None:
    service = DevicePluginService(host.config(), PluginMetrics())
    task = asyncio.create_task(service.run())
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await wait_for(lambda: kubelet.stream_ended == 1, message="ListAndWatch end seen by the kubelet")
    assert not exists(os.path.join(host.plugin_dir, "onload.sock"))
    assert service.servicer is not None
    assert service.servicer.active_streams == 0


def _registered_and_listed(kubelet: FakeKubelet, count: int) -> Callable[[], bool]:
    return lambda: len(kubelet.registrations) == count and len(kubelet.updates) == count
