"""Kubelet and pod garbage collection semantics against the fake store."""

import ipaddress
import re
from typing import Any

import pytest

from kubesim.controllers import Controllers
from kubesim.errors import ApiError
from tests.kubesim.controllers.sim_fake_store import FakeStore
from tests.kubesim.controllers.sim_helpers import add_nodes, pod, wait_for

PODS = "v1/pods"


def phase(store: FakeStore, name: str) -> str | None:
    obj = store.get(PODS, "default", name)
    return None if obj is None else obj["status"].get("phase")


def ready(store: FakeStore, name: str) -> bool:
    obj = store.get(PODS, "default", name)
    assert obj is not None
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj["status"].get("conditions", []))


async def test_bound_pod_starts_running_with_kubelet_status(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "1")
    node = store.get("v1/nodes", None, "node-0")
    assert node is not None
    store.create(PODS, pod("app", "node-0"))
    await wait_for(lambda: phase(store, "app") == "Running", what="Running")
    status = store.get(PODS, "default", "app")["status"]  # type: ignore[index]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    host_ip = node["status"]["addresses"][0]["address"]
    assert status["hostIP"] == host_ip
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(node["spec"]["podCIDR"])
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["startTime"])
    [container] = status["containerStatuses"]
    assert re.fullmatch(r"containerd://[0-9a-f]{64}", container["containerID"])
    assert container["ready"] is True
    assert container["started"] is True
    assert container["restartCount"] == 0
    assert "running" in container["state"]
    assert container["image"] == "registry.example/app:2.1"
    assert container["imageID"].startswith("registry.example/app@sha256:")


async def test_host_network_pod_uses_host_ip_and_pod_ips_differ(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "1")
    store.create(PODS, pod("host", "node-0", host_network=True))
    store.create(PODS, pod("a", "node-0"))
    store.create(PODS, pod("b", "node-0"))
    await wait_for(lambda: all(phase(store, n) == "Running" for n in ("host", "a", "b")))
    statuses = {n: store.get(PODS, "default", n)["status"] for n in ("host", "a", "b")}  # type: ignore[index]
    assert statuses["host"]["podIP"] == statuses["host"]["hostIP"]
    assert statuses["a"]["podIP"] != statuses["b"]["podIP"]


async def test_unbound_and_missing_node_pods_stay_pending(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "1")
    store.create(PODS, pod("unbound", None))
    store.create(PODS, pod("early", "late-0"))
    store.create(PODS, pod("witness", "node-0"))
    await wait_for(lambda: phase(store, "witness") == "Running", what="the kubelet ran")
    assert phase(store, "unbound") == "Pending"
    assert phase(store, "early") == "Pending"
    add_nodes(store, "late-0")
    await wait_for(lambda: phase(store, "early") == "Running", what="pod starts once its node exists")
    assert phase(store, "unbound") == "Pending"


async def test_node_not_ready_blocks_starts_and_unreadies_pods(store: FakeStore, controllers: Controllers) -> None:
    assert controllers.kubelet is not None
    add_nodes(store, "2")
    store.create(PODS, pod("running", "node-0"))
    await wait_for(lambda: ready(store, "running"))
    controllers.kubelet.set_node_ready("node-0", False)
    node = store.get("v1/nodes", None, "node-0")
    assert node is not None
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["False"]
    await wait_for(lambda: not ready(store, "running"), what="pod not ready")
    assert phase(store, "running") == "Running"
    store.create(PODS, pod("waiting", "node-0"))
    store.create(PODS, pod("witness", "node-1"))
    await wait_for(lambda: phase(store, "witness") == "Running")
    assert phase(store, "waiting") == "Pending"
    # Without kubelet reports a deleted pod stays Terminating.
    store.create(PODS, pod("leaving", "node-1"))
    await wait_for(lambda: phase(store, "leaving") == "Running")
    controllers.kubelet.set_node_ready("node-1", False)
    store.delete(PODS, "default", "leaving")
    store.delete(PODS, "default", "witness")
    store.create(PODS, pod("witness-2", "node-0"))
    controllers.kubelet.set_node_ready("node-0", True)
    await wait_for(lambda: ready(store, "running") and phase(store, "waiting") == "Running", what="node back")
    await wait_for(lambda: phase(store, "witness-2") == "Running")
    assert store.get(PODS, "default", "leaving")["metadata"]["deletionTimestamp"]  # type: ignore[index]
    controllers.kubelet.set_node_ready("node-1", True)
    await wait_for(lambda: phase(store, "leaving") is None and phase(store, "witness") is None, what="finished")
    with pytest.raises(ApiError) as missing:
        controllers.kubelet.set_node_ready("nope", True)
    assert missing.value.code == 404


async def test_deleted_pod_terminates_then_disappears(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "1")
    seen: list[Any] = []
    store.subscribe(PODS, lambda event: seen.append(event))
    store.create(PODS, pod("app", "node-0"))
    await wait_for(lambda: phase(store, "app") == "Running")
    store.delete(PODS, "default", "app")
    assert store.get(PODS, "default", "app")["metadata"]["deletionTimestamp"]  # type: ignore[index]
    await wait_for(lambda: seen and seen[-1]["type"] == "DELETED", what="pod removed")
    assert store.get(PODS, "default", "app") is None
    # The final state is reported before or with the deletion (kubesim's store removes a terminating pod on the
    # kubelet's status write already; a real API server waits for the kubelet's second delete).
    finished = [e["object"] for e in seen if e["object"]["status"]["phase"] == "Succeeded"]
    assert finished, "the kubelet reports the terminated containers before the pod goes"
    state = finished[-1]["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == 0
    assert seen[-1]["type"] == "DELETED"


async def test_pod_with_finalizer_waits_for_it(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "1")
    guarded = pod("guarded", "node-0")
    guarded["metadata"]["finalizers"] = ["example.com/keep"]
    store.create(PODS, guarded)
    await wait_for(lambda: phase(store, "guarded") == "Running")
    store.delete(PODS, "default", "guarded")
    await wait_for(lambda: phase(store, "guarded") == "Succeeded", what="terminated but kept by its finalizer")
    store.merge_patch(PODS, "default", "guarded", {"metadata": {"finalizers": None}})
    await wait_for(lambda: store.get(PODS, "default", "guarded") is None, what="pod removed after the finalizer")


async def test_extended_resources_are_admitted_against_allocatable(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "onload-0:capacity=amd.com/onload=2;plain-0")
    store.create(PODS, pod("first", "onload-0", requests={"amd.com/onload": "2"}))
    await wait_for(lambda: phase(store, "first") == "Running")
    store.create(PODS, pod("second", "onload-0", requests={"amd.com/onload": "1"}))
    store.create(PODS, pod("elsewhere", "plain-0", requests={"amd.com/onload": "1"}))
    await wait_for(lambda: phase(store, "second") == "Failed" and phase(store, "elsewhere") == "Failed")
    second = store.get(PODS, "default", "second")["status"]  # type: ignore[index]
    assert second["reason"] == "OutOfamd.com/onload"
    assert "requested: 1, used: 2, capacity: 2" in second["message"]
    elsewhere = store.get(PODS, "default", "elsewhere")["status"]  # type: ignore[index]
    assert "capacity: 0" in elsewhere["message"]
    # Freeing the devices lets the next pod in.
    store.delete(PODS, "default", "first")
    await wait_for(lambda: store.get(PODS, "default", "first") is None)
    store.create(PODS, pod("third", "onload-0", requests={"amd.com/onload": "2"}))
    await wait_for(lambda: phase(store, "third") == "Running")


async def test_pod_gc_deletes_pods_of_deleted_nodes(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "2")
    store.create(PODS, pod("doomed", "node-0"))
    store.create(PODS, pod("kept", "node-1"))
    store.create(PODS, pod("orphan", "node-0"))
    await wait_for(lambda: phase(store, "doomed") == "Running" and phase(store, "kept") == "Running")
    store.delete("v1/nodes", None, "node-0")
    await wait_for(lambda: phase(store, "doomed") is None and phase(store, "orphan") is None, what="pods collected")
    assert phase(store, "kept") == "Running"
