"""NIC discovery end to end: the real plugin process runs in a network namespace of the test's own, veth links
come and go there (created with iproute2), and a temporary sysfs tree gives each interface's vendor, driver and
NUMA node. The fake kubelet in the test process reaches the plugin through the shared unix-socket directory."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc
from tests.device_plugin.dp_helpers import (
    HostTree,
    change_links,
    start_plugin_process,
    stop_process,
    wait_for,
)
from tests.device_plugin.fake_kubelet import FakeKubelet


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"dp-test-{os.getpid()}"
    created = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if created.returncode != 0:
        pytest.skip(f"the kernel refused to create a network namespace: {created.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _numa(kubelet: FakeKubelet) -> list[list[int]]:
    return [[node.ID for node in device.topology.nodes] for device in kubelet.latest]


def _health(kubelet: FakeKubelet) -> set[str]:
    return {device.health for device in kubelet.latest}


async def test_nics_appearing_and_disappearing_update_health_and_topology(
    host: HostTree, kubelet: FakeKubelet, namespace: str
) -> None:
    host.load_module()
    host.add_nic("sf0", vendor="0x1924", driver="sfc", numa="1")
    host.add_nic("x3", vendor="0x10ee", driver="xilinx_efct", numa="0")
    host.add_nic("eth9", vendor="0x8086", driver="ixgbe", numa="0")
    plugin = await start_plugin_process(host, "-maxPods=4", "-needNic=true", "-metricsPort=0", namespace=namespace)
    try:
        await wait_for(lambda: len(kubelet.updates) == 1, deadline=10.0, message="first device list")
        assert _health(kubelet) == {"Unhealthy"}

        await change_links(namespace, op="add", ifname="sf0", peer="eth9")
        await wait_for(lambda: _health(kubelet) == {"Healthy"}, deadline=2.0, message="NIC seen")
        assert _numa(kubelet) == [[1], [1], [1], [1]]

        await change_links(namespace, op="add", ifname="x3", peer="peer-x3")
        await wait_for(lambda: _numa(kubelet) == [[0], [1], [0], [1]], deadline=2.0, message="second NIC")
        stub = pb_grpc.DevicePluginStub(kubelet.plugin_channel())
        preferred = await stub.GetPreferredAllocation(
            pb.PreferredAllocationRequest(
                container_requests=[
                    pb.ContainerPreferredAllocationRequest(
                        available_deviceIDs=["sfc-0", "sfc-1", "sfc-3"], allocation_size=2
                    )
                ]
            )
        )
        assert list(preferred.container_responses[0].deviceIDs) == ["sfc-1", "sfc-3"]

        # A rename is a new name for the same link: the old name no longer counts.
        await change_links(namespace, op="rename", ifname="x3", new="renamed")
        await wait_for(lambda: _numa(kubelet) == [[1], [1], [1], [1]], deadline=2.0, message="rename")

        await change_links(namespace, op="del", ifname="sf0")
        await wait_for(lambda: _health(kubelet) == {"Unhealthy"}, deadline=2.0, message="NIC removal")
        assert _numa(kubelet) == [[], [], [], []]
        assert len(kubelet.registrations) == 1
    finally:
        code, log = await stop_process(plugin)
    assert code == 0, log
