"""The advertised device list: ids, health and NUMA topology, and the NUMA-aware preferred allocation.

``amd.com/onload`` devices are not hardware: the plugin advertises ``maxPods`` pseudo-devices
``sfc-0 … sfc-<maxPods-1>`` so that up to that many containers per node can use Onload.

Topology: the pseudo-devices are spread round-robin over the NUMA nodes of the Onload NICs
(sorted node ids; ``sfc-i`` belongs to node ``nodes[i % len(nodes)]``). The kubelet's Topology Manager can then
give a pod CPUs and a device on the same node as a NIC, and GetPreferredAllocation picks devices of one node.
NICs whose NUMA node is unknown (``-1``, missing or unreadable) add no topology; with no known node the devices
carry no topology at all, which the kubelet reads as "no preference".

Health: every device is Healthy only while ``/dev/onload`` and ``/dev/onload_epoll`` exist, when NICs are
required at least one Onload NIC is present, and, when the plugin was told which Onload version it serves, the
loaded module does not report another one (``/sys/module/onload/version``): user space of one version with the
kernel module of another must never reach a pod. All devices change together because they share the same
kernel module and NICs.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from device_plugin.hostfs import read_text

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
DEVICE_ID_PREFIX = "sfc-"
REQUIRED_DEVICE_NODES = ("onload", "onload_epoll")

SOLARFLARE_VENDOR = "0x1924"
XILINX_VENDOR = "0x10ee"
ONLOAD_NIC_DRIVERS = frozenset({"sfc", "xilinx_efct"})


@dataclass(frozen=True, order=True)
class Nic:
    """A network interface Onload can accelerate, with the facts sysfs gives about its PCI function."""

    name: str
    vendor: str
    driver: str
    numa_node: int | None


@dataclass(frozen=True)
class PluginDevice:
    id: str
    health: str
    numa_node: int | None


def read_nic(sysfs_root: str, ifname: str) -> Nic | None:
    """Classify interface ``ifname`` from ``<sysfs_root>/class/net/<ifname>/device``; None if not for Onload.

    Accepted: PCI vendor 0x1924 (Solarflare, all SFC9xxx/X2 NICs), or any function bound to an Onload-capable
    driver (``sfc``, ``xilinx_efct``), which covers the AMD/Xilinx NICs with vendor 0x10ee. Vendor 0x10ee alone
    is not enough (it also covers FPGA functions), and AMD's 0x1022 is deliberately not matched: it is the
    vendor of emulated PCnet NICs (``pcnet32``), not of an Onload NIC.
    """
    device_dir = os.path.join(sysfs_root, "class", "net", ifname, "device")
    if not os.path.isdir(device_dir):
        return None
    vendor = (read_text(os.path.join(device_dir, "vendor")) or "").strip().lower()
    try:
        driver = os.path.basename(os.readlink(os.path.join(device_dir, "driver")))
    except OSError:
        driver = ""
    if vendor != SOLARFLARE_VENDOR and driver not in ONLOAD_NIC_DRIVERS:
        return None
    return Nic(name=ifname, vendor=vendor, driver=driver, numa_node=_parse_numa(device_dir))


def _parse_numa(device_dir: str) -> int | None:
    text = read_text(os.path.join(device_dir, "numa_node"))
    try:
        node = int(text) if text is not None else -1
    except ValueError:
        return None
    return node if node >= 0 else None


def discover_nics(sysfs_root: str, ifnames: Iterable[str]) -> tuple[Nic, ...]:
    found = (read_nic(sysfs_root, name) for name in ifnames)
    return tuple(sorted(nic for nic in found if nic is not None))


def onload_nodes_present(dev_root: str) -> bool:
    return all(os.path.exists(os.path.join(dev_root, name)) for name in REQUIRED_DEVICE_NODES)


def loaded_module_version(sysfs_root: str) -> str | None:
    """The version the loaded ``onload`` module reports, or None (not loaded, or too old to say)."""
    text = read_text(os.path.join(sysfs_root, "module", "onload", "version"))
    if text is None:
        return None
    return text.strip() or None


def versions_match(expected: str, loaded: str) -> bool:
    """True when one version is the other, or extends it by more dot-separated parts (``9.0.1`` and ``9.0.1.86``)."""
    shorter, longer = sorted((expected.strip(), loaded.strip()), key=len)
    return longer == shorter or longer.startswith(shorter + ".")


def device_ids(count: int) -> list[str]:
    return [f"{DEVICE_ID_PREFIX}{index}" for index in range(count)]


def build_devices(
    count: int, onload_loaded: bool, nics: Sequence[Nic], need_nic: bool, version_ok: bool = True
) -> tuple[PluginDevice, ...]:
    healthy = onload_loaded and (bool(nics) or not need_nic) and version_ok
    health = HEALTHY if healthy else UNHEALTHY
    nodes = sorted({nic.numa_node for nic in nics if nic.numa_node is not None})
    return tuple(
        PluginDevice(id=device_id, health=health, numa_node=nodes[index % len(nodes)] if nodes else None)
        for index, device_id in enumerate(device_ids(count))
    )


def preferred_allocation(
    available: Sequence[str], must_include: Sequence[str], size: int, numa_of: Mapping[str, int | None]
) -> list[str]:
    """Choose ``size`` ids from ``available``: all of ``must_include``, then devices of a single NUMA node.

    The node is the one most of ``must_include`` sit on; without such a hint it is the node with the most
    available devices, so the whole request fits on one node where possible. Remaining slots are filled in
    the kubelet's order.
    """
    chosen = list(dict.fromkeys(must_include))
    if len(chosen) >= size:
        return chosen[:size]
    remaining = [device for device in dict.fromkeys(available) if device not in chosen]
    hinted = Counter(numa_of.get(device) for device in chosen if numa_of.get(device) is not None)
    pool = Counter(numa_of.get(device) for device in remaining if numa_of.get(device) is not None)
    counts = hinted or pool
    if counts:
        target = max(counts, key=lambda node: (counts[node], pool[node], -(node or 0)))
        remaining.sort(key=lambda device: numa_of.get(device) != target)
    return chosen + remaining[: size - len(chosen)]
