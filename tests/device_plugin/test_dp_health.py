"""Device health follows the Onload device nodes (and NICs when required), streamed at once by ListAndWatch."""

from __future__ import annotations

import pytest

from tests.device_plugin.dp_helpers import HostTree, StartPlugin, touch, wait_for
from tests.device_plugin.fake_kubelet import FakeKubelet


def _health(kubelet: FakeKubelet) -> set[str]:
    return {device.health for device in kubelet.latest}


async def test_health_flips_with_the_device_nodes_and_recovers(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    service = await start_plugin()
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    assert _health(kubelet) == {"Unhealthy"}
    assert len(kubelet.latest) == 4
    for cycle in range(3):
        host.load_module()
        await wait_for(lambda: _health(kubelet) == {"Healthy"}, deadline=1.0, message=f"healthy {cycle}")
        host.unload_module()
        await wait_for(lambda: _health(kubelet) == {"Unhealthy"}, deadline=1.0, message=f"unhealthy {cycle}")
    # Every change was one full-list message, and nothing was sent without a change.
    assert len(kubelet.updates) == 7
    assert all(len(update) == 4 for update in kubelet.updates)
    sample = service.metrics.registry.get_sample_value
    assert sample("onload_device_plugin_health_changes_total", {"health": "Healthy"}) == 3
    assert sample("onload_device_plugin_health_changes_total", {"health": "Unhealthy"}) == 4
    assert sample("onload_device_plugin_healthy_devices") == 0


async def test_one_device_node_is_not_enough(host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    touch(f"{host.dev}/onload")
    await start_plugin()
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    assert _health(kubelet) == {"Unhealthy"}
    touch(f"{host.dev}/onload_epoll")
    await wait_for(lambda: _health(kubelet) == {"Healthy"}, deadline=1.0, message="healthy")


async def test_need_nic_without_a_nic_advertises_unhealthy_devices(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    host.load_module()
    # The sysfs tree is empty, so none of this namespace's interfaces is an Onload NIC.
    service = await start_plugin(need_nic=True)
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    assert _health(kubelet) == {"Unhealthy"}
    assert len(kubelet.latest) == 4
    assert service.registrations == 1
    assert "no Onload NIC found" in caplog.text
