"""The compact node spec."""

import pytest

from kubesim.nodes import DEFAULT_KERNEL, NodeSpecError, nodes_from_spec


def test_count_builds_default_nodes() -> None:
    nodes = nodes_from_spec(3)
    assert [n["metadata"]["name"] for n in nodes] == ["node-0", "node-1", "node-2"]
    assert [n["metadata"]["name"] for n in nodes_from_spec("3")] == ["node-0", "node-1", "node-2"]
    node = nodes[1]
    assert node["apiVersion"] == "v1"
    assert node["kind"] == "Node"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-1"
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert node["status"]["nodeInfo"]["kernelVersion"] == DEFAULT_KERNEL
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    assert {"cpu", "memory", "pods"} <= set(node["status"]["allocatable"])
    assert node["status"]["capacity"] == node["status"]["allocatable"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["Hostname"] == "node-1"
    assert addresses["InternalIP"] != nodes[0]["status"]["addresses"][0]["address"]
    assert "taints" not in node["spec"]
    assert nodes_from_spec(0) == []


def test_groups_with_every_field() -> None:
    spec = (
        "worker-[0-99]:kernel=5.14.0-284.el9.x86_64:labels=node-role.kubernetes.io/worker=,"
        "feature.node.kubernetes.io/pci-1924.present=true:taints=key=value:NoSchedule;"
        "gpu-[08-10]x:taints=nvidia.com/gpu:NoExecute,a=b:PreferNoSchedule:capacity=nvidia.com/gpu=8,cpu=64:"
        "unschedulable:notready"
    )
    nodes = nodes_from_spec(spec)
    assert len(nodes) == 103
    worker = nodes[42]
    assert worker["metadata"]["name"] == "worker-42"
    assert worker["status"]["nodeInfo"]["kernelVersion"] == "5.14.0-284.el9.x86_64"
    assert worker["metadata"]["labels"]["node-role.kubernetes.io/worker"] == ""
    assert worker["metadata"]["labels"]["feature.node.kubernetes.io/pci-1924.present"] == "true"
    assert worker["spec"]["taints"] == [{"key": "key", "value": "value", "effect": "NoSchedule"}]
    gpus = nodes[100:]
    assert [n["metadata"]["name"] for n in gpus] == ["gpu-08x", "gpu-09x", "gpu-10x"]
    gpu = gpus[0]
    assert gpu["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "effect": "NoExecute"},
        {"key": "a", "value": "b", "effect": "PreferNoSchedule"},
    ]
    assert gpu["spec"]["unschedulable"] is True
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert gpu["status"]["allocatable"]["cpu"] == "64"
    assert [c["status"] for c in gpu["status"]["conditions"] if c["type"] == "Ready"] == ["False"]
    ips = {n["status"]["addresses"][0]["address"] for n in nodes}
    assert len(ips) == len(nodes)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty node spec"),
        ("a;;b", "empty node group"),
        ("w-[5-1]", "greater than its end"),
        ("w-[1-2", "a range is written"),
        ("Upper", "not a valid node name"),
        ("a:kernel=", "invalid kernel version"),
        ("a:labels=x=1,", "empty item"),
        ("a:labels=-bad=1", "invalid label or taint key"),
        ("a:labels=x=bad value", "invalid value"),
        ("a:taints=x=y", "must end with"),
        ("a:taints=x=y:Sometimes", "must end with"),
        ("a:capacity=cpu=lots", "invalid quantity"),
        ("a:labels=x=1:labels=y=2", "given twice"),
        ("a:colour=blue", "unknown field 'colour=blue'"),
        ("a:notready=yes", "unknown field"),
        ("a;a", "defined twice"),
        ("200000", "at most"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(NodeSpecError, match=message.replace("[", r"\[").replace("(", r"\(")):
        nodes_from_spec(spec)
