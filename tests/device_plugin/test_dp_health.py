"""Device health follows the Onload device nodes (and NICs when required), streamed at once by ListAndWatch."""

from __future__ import annotations

import os

import pytest

from device_plugin.devices import versions_match
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


def _report_module_version(host: HostTree, version: str) -> None:
    module = os.path.join(host.sysfs, "module", "onload")
    os.makedirs(module, exist_ok=True)
    with open(os.path.join(module, "version"), "w") as handle:
        handle.write(version + "\n")


async def test_a_module_of_another_version_makes_every_device_unhealthy_until_they_match(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    _report_module_version(host, "8.1.2.26")
    host.load_module()
    service = await start_plugin(onload_version="9.0.1")
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    assert _health(kubelet) == {"Unhealthy"}
    mismatch = service.metrics.registry.get_sample_value
    assert mismatch("onload_device_plugin_onload_version_mismatch", {"expected": "9.0.1", "loaded": "8.1.2.26"}) == 1
    assert "the loaded onload module is version 8.1.2.26 but this plugin serves 9.0.1" in caplog.text
    # The module is reloaded at the served version: its device nodes go and come back.
    host.unload_module()
    _report_module_version(host, "9.0.1.86")
    host.load_module()
    await wait_for(lambda: _health(kubelet) == {"Healthy"}, deadline=1.0, message="healthy at the served version")
    assert mismatch("onload_device_plugin_onload_version_mismatch", {"expected": "9.0.1", "loaded": "8.1.2.26"}) is None


async def test_no_served_version_means_no_check(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    _report_module_version(host, "8.1.2.26")
    host.load_module()
    await start_plugin()
    await wait_for(lambda: len(kubelet.updates) == 1, message="first device list")
    assert _health(kubelet) == {"Healthy"}


@pytest.mark.parametrize(
    ("expected", "loaded", "match"),
    [
        ("9.0.1", "9.0.1", True),
        ("9.0.1", "9.0.1.86", True),
        ("9.0.1.86", "9.0.1", True),
        ("9.0.1", "9.0.10", False),
        ("9.0.1", "8.1.2.26", False),
    ],
)
def test_versions_match(expected: str, loaded: str, match: bool) -> None:
    assert versions_match(expected, loaded) is match
