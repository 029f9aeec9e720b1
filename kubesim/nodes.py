"""Node objects built from a compact text spec.

Grammar (whitespace around separators is ignored)::

    spec    := COUNT | group (";" group)*
    group   := names (":" field)*
    names   := NAME | PREFIX "[" FIRST "-" LAST "]" [SUFFIX]
    field   := "kernel=" KERNEL_VERSION
             | "labels=" label ("," label)*          label := KEY ["=" VALUE]   (no "=": empty value)
             | "taints=" taint ("," taint)*          taint := KEY ["=" VALUE] ":" EFFECT
             | "capacity=" resource ("," resource)*  resource := NAME "=" QUANTITY
             | "unschedulable"
             | "notready"

``COUNT`` alone (``"3"`` or the integer ``3``) means ``node-0`` .. ``node-2`` with the defaults. A range expands
to ``PREFIX<n>SUFFIX`` for FIRST <= n <= LAST; a FIRST written with leading zeros (``[00-15]``) sets the width.
EFFECT is ``NoSchedule``, ``PreferNoSchedule`` or ``NoExecute``. ``capacity`` sets or adds resources (cpu,
memory, pods, ephemeral-storage or extended resources such as ``amd.com/onload=32``); allocatable equals capacity.

Example::

    worker-[0-99]:kernel=5.14.0-284.el9.x86_64:labels=node-role.kubernetes.io/worker=,feature.node.kubernetes.io/pci-1924.present=true;gpu-[0-1]:taints=nvidia.com/gpu=present:NoSchedule:capacity=nvidia.com/gpu=8

Every node gets the well-known labels (``kubernetes.io/hostname``, ``kubernetes.io/os``, ``kubernetes.io/arch``),
a Ready condition (False with ``notready``), an InternalIP address and ``status.nodeInfo`` with the kernel version.
"""

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from kubesim.syntax import DNS_SUBDOMAIN, LABEL_NAME, label_key_problem, label_value_problem

JsonObject = dict[str, Any]

DEFAULT_KERNEL = "5.14.0-284.30.1.el9_2.x86_64"
DEFAULT_CAPACITY = {"cpu": "4", "memory": "16303232Ki", "pods": "110", "ephemeral-storage": "104845292Ki"}
KUBELET_VERSION = "v1.31.0"
MAX_NODES = 100_000

_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_FIELDS = ("kernel", "labels", "taints", "capacity")
_FLAGS = ("unschedulable", "notready")
_FIELD_START = re.compile(r":\s*(?=(?:" + "|".join(_FIELDS) + r")\s*=|(?:" + "|".join(_FLAGS) + r")\s*(?::|$))")
_RANGE = re.compile(r"^(?P<prefix>[^\[\]]*)\[(?P<first>\d+)-(?P<last>\d+)\](?P<suffix>[^\[\]]*)$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_KERNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")


class NodeSpecError(ValueError):
    """The node spec text does not follow the grammar; the message names the offending part."""


def nodes_from_spec(spec: str | int) -> list[JsonObject]:
    """Node objects described by ``spec`` (see the module docstring for the grammar)."""
    text = str(spec).strip()
    if not text:
        raise NodeSpecError("empty node spec")
    if text.isdigit():
        count = int(text)
        _check_count(count, text)
        text = f"node-[0-{count - 1}]" if count else ""
        if not text:
            return []
    nodes: list[JsonObject] = []
    seen: set[str] = set()
    for group in text.split(";"):
        group = group.strip()
        if not group:
            raise NodeSpecError(f"empty node group in {text!r}")
        for node in _parse_group(group, start_index=len(nodes)):
            name = node["metadata"]["name"]
            if name in seen:
                raise NodeSpecError(f"node {name!r} is defined twice")
            seen.add(name)
            nodes.append(node)
            if len(nodes) > MAX_NODES:
                raise NodeSpecError(f"more than {MAX_NODES} nodes")
    return nodes


def _check_count(count: int, text: str) -> None:
    if count > MAX_NODES:
        raise NodeSpecError(f"{text!r}: at most {MAX_NODES} nodes")


def _parse_group(group: str, start_index: int) -> list[JsonObject]:
    names_part, *fields = _FIELD_START.split(group)
    names_part, colon, unknown = names_part.partition(":")
    if colon:
        raise NodeSpecError(
            f"{group!r}: unknown field {unknown.split(':')[0]!r}; the fields are "
            + ", ".join(f"{field}=" for field in _FIELDS)
            + " and the flags "
            + ", ".join(_FLAGS)
        )
    names = _expand_names(names_part.strip())
    kernel = DEFAULT_KERNEL
    labels: dict[str, str] = {}
    taints: list[JsonObject] = []
    capacity = dict(DEFAULT_CAPACITY)
    unschedulable = False
    ready = True
    given: set[str] = set()
    for raw in fields:
        field = raw.strip()
        key, has_value, value = (part.strip() for part in field.partition("="))
        if key in given:
            raise NodeSpecError(f"{group!r}: field {key!r} given twice")
        given.add(key)
        if key in _FLAGS:
            if has_value:
                raise NodeSpecError(f"{group!r}: {key!r} is a flag and takes no value")
            unschedulable = unschedulable or key == "unschedulable"
            ready = ready and key != "notready"
        elif key == "kernel":
            if not _KERNEL.match(value):
                raise NodeSpecError(f"{group!r}: invalid kernel version {value!r}")
            kernel = value
        elif key == "labels":
            labels.update(_parse_labels(value, group))
        elif key == "taints":
            taints.extend(_parse_taints(value, group))
        else:
            capacity.update(_parse_capacity(value, group))
    return [
        _node(name, start_index + offset, kernel, labels, taints, capacity, unschedulable, ready)
        for offset, name in enumerate(names)
    ]


def _expand_names(names: str) -> list[str]:
    match = _RANGE.match(names)
    if match is None:
        if "[" in names or "]" in names:
            raise NodeSpecError(f"{names!r}: a range is written PREFIX[FIRST-LAST]SUFFIX, e.g. worker-[0-9]")
        candidates = [names]
    else:
        first, last = match["first"], match["last"]
        low, high = int(first), int(last)
        if low > high:
            raise NodeSpecError(f"{names!r}: range start {low} is greater than its end {high}")
        _check_count(high - low + 1, names)
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        candidates = [f"{match['prefix']}{n:0{width}d}{match['suffix']}" for n in range(low, high + 1)]
    for name in candidates:
        if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            raise NodeSpecError(f"{name!r} is not a valid node name (lowercase DNS subdomain)")
    return candidates


def _split_list(value: str, group: str, what: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise NodeSpecError(f"{group!r}: empty item in {what} {value!r}")
    return items


def _check_label_key(key: str, group: str) -> None:
    if label_key_problem(key):
        raise NodeSpecError(f"{group!r}: invalid label or taint key {key!r}")


def _check_label_value(value: str, key: str, group: str) -> None:
    if label_value_problem(value):
        raise NodeSpecError(f"{group!r}: invalid value {value!r} for {key!r}")


def _parse_labels(value: str, group: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in _split_list(value, group, "labels"):
        key, _, label_value = item.partition("=")
        _check_label_key(key, group)
        _check_label_value(label_value, key, group)
        labels[key] = label_value
    return labels


def _parse_taints(value: str, group: str) -> list[JsonObject]:
    taints: list[JsonObject] = []
    for item in _split_list(value, group, "taints"):
        key_value, colon, effect = item.rpartition(":")
        if not colon or effect not in _EFFECTS:
            raise NodeSpecError(f"{group!r}: taint {item!r} must end with :{'|:'.join(_EFFECTS)}")
        key, has_value, taint_value = key_value.partition("=")
        _check_label_key(key, group)
        _check_label_value(taint_value, key, group)
        taint: JsonObject = {"key": key, "effect": effect}
        if has_value:
            taint["value"] = taint_value
        taints.append(taint)
    return taints


def _parse_capacity(value: str, group: str) -> dict[str, str]:
    capacity: dict[str, str] = {}
    for item in _split_list(value, group, "capacity"):
        name, _, quantity = item.partition("=")
        if "/" in name:
            _check_label_key(name, group)
        elif not LABEL_NAME.match(name):
            raise NodeSpecError(f"{group!r}: invalid resource name {name!r}")
        if not _QUANTITY.match(quantity):
            raise NodeSpecError(f"{group!r}: invalid quantity {quantity!r} for {name!r}")
        capacity[name] = quantity
    return capacity


def _node(
    name: str,
    index: int,
    kernel: str,
    labels: dict[str, str],
    taints: list[JsonObject],
    capacity: dict[str, str],
    unschedulable: bool,
    ready: bool,
) -> JsonObject:
    ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    node_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.kubesim"))
    spec: JsonObject = {"podCIDR": f"10.{128 + ((index >> 8) & 127)}.{index & 255}.0/24"}
    if taints:
        spec["taints"] = [dict(taint) for taint in taints]
    if unschedulable:
        spec["unschedulable"] = True
    conditions = [
        _condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        _condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        _condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        _condition("Ready", "True", "KubeletReady") if ready else _condition("Ready", "False", "KubeletNotReady"),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                **labels,
            },
        },
        "spec": spec,
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kernelVersion": kernel,
                "osImage": "Linux",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "containerd://1.7.20",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "machineID": node_uuid.replace("-", ""),
                "systemUUID": node_uuid,
                "bootID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}.boot")),
            },
        },
    }


def _condition(kind: str, status: str, reason: str) -> JsonObject:
    messages = {
        "KubeletHasSufficientMemory": "kubelet has sufficient memory available",
        "KubeletHasNoDiskPressure": "kubelet has no disk pressure",
        "KubeletHasSufficientPID": "kubelet has sufficient PID available",
        "KubeletReady": "kubelet is posting ready status",
        "KubeletNotReady": "container runtime network not ready",
    }
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": messages[reason],
        "lastHeartbeatTime": timestamp,
        "lastTransitionTime": timestamp,
    }
