"""Pure device logic: NIC classification from sysfs, the device list and the NUMA-aware preference."""

from __future__ import annotations

import pytest

from device_plugin.devices import Nic, build_devices, discover_nics, preferred_allocation, read_nic
from tests.device_plugin.dp_helpers import HostTree


def test_nic_classification(host: HostTree) -> None:
    host.add_nic("sf0", vendor="0x1924", driver="sfc", numa="1")
    host.add_nic("x3", vendor="0x10ee", driver="xilinx_efct", numa="-1")
    host.add_nic("ef100", vendor="0x10ee", driver="sfc", numa=None)
    host.add_nic("fpga", vendor="0x10ee", driver="xocl")
    host.add_nic("pcnet", vendor="0x1022", driver="pcnet32")
    host.add_nic("intel", vendor="0x8086", driver="ixgbe")
    assert read_nic(host.sysfs, "sf0") == Nic("sf0", "0x1924", "sfc", 1)
    assert read_nic(host.sysfs, "x3") == Nic("x3", "0x10ee", "xilinx_efct", None)
    assert read_nic(host.sysfs, "ef100") == Nic("ef100", "0x10ee", "sfc", None)
    for name in ("fpga", "pcnet", "intel", "lo", "missing"):
        assert read_nic(host.sysfs, name) is None
    names = ["intel", "sf0", "lo", "x3", "ef100"]
    assert [nic.name for nic in discover_nics(host.sysfs, names)] == ["ef100", "sf0", "x3"]


def test_solarflare_vendor_without_a_bound_driver_counts(host: HostTree) -> None:
    host.add_nic("sf1", vendor="0x1924", driver="vfio-pci", numa="0")
    assert read_nic(host.sysfs, "sf1") == Nic("sf1", "0x1924", "vfio-pci", 0)


def test_devices_spread_over_nic_numa_nodes() -> None:
    nics = [Nic("a", "0x1924", "sfc", 1), Nic("b", "0x1924", "sfc", 0), Nic("c", "0x1924", "sfc", 1)]
    devices = build_devices(5, onload_loaded=True, nics=nics, need_nic=True)
    assert [(d.id, d.health, d.numa_node) for d in devices] == [
        ("sfc-0", "Healthy", 0),
        ("sfc-1", "Healthy", 1),
        ("sfc-2", "Healthy", 0),
        ("sfc-3", "Healthy", 1),
        ("sfc-4", "Healthy", 0),
    ]


@pytest.mark.parametrize(
    ("loaded", "nics", "need_nic", "health", "numa"),
    [
        (True, [], False, "Healthy", None),
        (True, [], True, "Unhealthy", None),
        (False, [Nic("a", "0x1924", "sfc", 2)], True, "Unhealthy", 2),
        (True, [Nic("a", "0x1924", "sfc", None)], True, "Healthy", None),
    ],
)
def test_device_health_and_unknown_numa(
    loaded: bool, nics: list[Nic], need_nic: bool, health: str, numa: int | None
) -> None:
    devices = build_devices(3, loaded, nics, need_nic)
    assert {d.health for d in devices} == {health}
    assert {d.numa_node for d in devices} == {numa}


NUMA = {"sfc-0": 0, "sfc-1": 1, "sfc-2": 0, "sfc-3": 1, "sfc-4": 0, "sfc-5": 1}


@pytest.mark.parametrize(
    ("available", "must", "size", "expected"),
    [
        # No hint: the node with the most available devices (0) wins; kubelet order kept within it.
        (["sfc-1", "sfc-0", "sfc-2", "sfc-4"], [], 2, ["sfc-0", "sfc-2"]),
        # A must-include device pins the node.
        (["sfc-0", "sfc-1", "sfc-2", "sfc-3", "sfc-5"], ["sfc-3"], 3, ["sfc-3", "sfc-1", "sfc-5"]),
        # Not enough on one node: fill from the other.
        (["sfc-0", "sfc-1", "sfc-3"], [], 3, ["sfc-1", "sfc-3", "sfc-0"]),
        # Must-include alone satisfies the size.
        (["sfc-0", "sfc-1"], ["sfc-1", "sfc-0"], 1, ["sfc-1"]),
    ],
)
def test_preferred_allocation(available: list[str], must: list[str], size: int, expected: list[str]) -> None:
    assert preferred_allocation(available, must, size, NUMA) == expected


def test_preferred_allocation_without_topology_keeps_kubelet_order() -> None:
    assert preferred_allocation(["sfc-2", "sfc-0", "sfc-1"], [], 2, {}) == ["sfc-2", "sfc-0"]


def test_zero_devices_advertises_none() -> None:
    """maxPodsPerNode: 0 (allowed by the CRD, as by the Go operator) advertises no device."""
    assert build_devices(0, onload_loaded=True, nics=[], need_nic=False) == ()
