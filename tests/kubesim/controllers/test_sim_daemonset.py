"""DaemonSet controller semantics against the fake store."""

import re
from typing import Any

from kubesim.controllers import Controllers
from tests.kubesim.controllers.sim_fake_store import FakeStore
from tests.kubesim.controllers.sim_helpers import add_nodes, daemonset, wait_for

DS = "apps/v1/daemonsets"
PODS = "v1/pods"


def ds_pods(store: FakeStore, name: str = "agent") -> list[dict[str, Any]]:
    return [p for p in store.list(PODS, "default") if p["metadata"]["ownerReferences"][0]["name"] == name]


def pods_by_node(store: FakeStore, name: str = "agent") -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    for p in ds_pods(store, name):
        result.setdefault(p["spec"]["nodeName"], []).append(p)
    return result


def status(store: FakeStore, name: str = "agent") -> dict[str, Any]:
    obj = store.get(DS, "default", name)
    assert obj is not None
    result: dict[str, Any] = obj.get("status") or {}
    return result


def all_running(store: FakeStore, count: int, name: str = "agent") -> bool:
    pods = ds_pods(store, name)
    return len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods)


async def test_one_pod_per_node_with_owner_labels_and_status(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "3")
    created = store.create(DS, daemonset())
    await wait_for(lambda: all_running(store, 3), what="3 running daemon pods")
    pods = ds_pods(store)
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-0", "node-1", "node-2"]
    for p in pods:
        assert re.fullmatch(r"agent-[bcdfghjklmnpqrstvwxz2456789]{5}", p["metadata"]["name"])
        assert p["metadata"]["generateName"] == "agent-"
        owner = p["metadata"]["ownerReferences"][0]
        assert owner == {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": "agent",
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        labels = p["metadata"]["labels"]
        assert labels["app"] == "agent"
        assert re.fullmatch(r"[0-9a-f]{10}", labels["controller-revision-hash"])
        assert labels["pod-template-generation"] == "1"
        terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms == {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [p["spec"]["nodeName"]]}]}
            ]
        }
        keys = {t["key"] for t in p["spec"]["tolerations"]}
        assert {"node.kubernetes.io/not-ready", "node.kubernetes.io/unschedulable"} <= keys
    expected = {
        "desiredNumberScheduled": 3,
        "currentNumberScheduled": 3,
        "numberReady": 3,
        "numberAvailable": 3,
        "updatedNumberScheduled": 3,
        "numberMisscheduled": 0,
        "numberUnavailable": 0,
        "observedGeneration": 1,
    }
    await wait_for(lambda: status(store) == expected, what=f"status {expected}")


async def test_node_selector_and_affinity_follow_node_labels(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "a-[0-1]:labels=role=a;b-[0-1]:labels=role=b,zone=9;c-0")
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "role", "operator": "In", "values": ["a", "b"]}]},
                ]
            }
        }
    }
    store.create(DS, daemonset(affinity=affinity))
    await wait_for(lambda: sorted(pods_by_node(store)) == ["a-0", "a-1", "b-0", "b-1"], what="pods on a-*, b-*")

    store.create(
        DS,
        daemonset(
            "zoned",
            node_selector={"role": "b"},
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["5"]}]}
                        ]
                    }
                }
            },
        ),
    )
    await wait_for(lambda: sorted(pods_by_node(store, "zoned")) == ["b-0", "b-1"], what="zoned pods on b-*")

    # Labelling c-0 makes it eligible; unlabelling b-1 makes its pods terminate and disappear.
    store.merge_patch("v1/nodes", None, "c-0", {"metadata": {"labels": {"role": "a"}}})
    store.merge_patch("v1/nodes", None, "b-1", {"metadata": {"labels": {"role": None}}})
    await wait_for(
        lambda: sorted(pods_by_node(store)) == ["a-0", "a-1", "b-0", "c-0"], what="agent moved from b-1 to c-0"
    )
    await wait_for(lambda: sorted(pods_by_node(store, "zoned")) == ["b-0"], what="zoned pod left b-1")
    await wait_for(lambda: status(store).get("desiredNumberScheduled") == 4 and status(store)["numberReady"] == 4)


async def test_taints_tolerations_and_unschedulable_nodes(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(
        store,
        "plain-0;cordoned-0:unschedulable;gpu-0:taints=gpu=true:NoSchedule;"
        "down-0:taints=node.kubernetes.io/not-ready:NoExecute;soft-0:taints=x=y:PreferNoSchedule",
    )
    store.create(DS, daemonset())
    store.create(DS, daemonset("gpu", tolerations=[{"key": "gpu", "operator": "Equal", "value": "true"}]))
    expected_agent = ["cordoned-0", "down-0", "plain-0", "soft-0"]
    await wait_for(lambda: sorted(pods_by_node(store)) == expected_agent, what="agent skips the gpu taint")
    await wait_for(lambda: sorted(pods_by_node(store, "gpu")) == sorted([*expected_agent, "gpu-0"]))

    # A NoSchedule taint added later leaves the running pod alone (counted as misscheduled)...
    store.merge_patch("v1/nodes", None, "plain-0", {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})
    await wait_for(lambda: status(store).get("numberMisscheduled") == 1, what="misscheduled pod counted")
    assert "plain-0" in pods_by_node(store)
    assert status(store)["desiredNumberScheduled"] == 3
    # ... a NoExecute taint evicts it.
    store.merge_patch("v1/nodes", None, "plain-0", {"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}})
    await wait_for(lambda: "plain-0" not in pods_by_node(store), what="pod removed by NoExecute taint")
    await wait_for(lambda: status(store).get("numberMisscheduled") == 0)


async def test_on_delete_keeps_old_pods_until_deleted(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "2")
    store.create(DS, daemonset(strategy={"type": "OnDelete"}))
    await wait_for(lambda: all_running(store, 2), what="2 running pods")
    old_hash = ds_pods(store)[0]["metadata"]["labels"]["controller-revision-hash"]
    old_names = {p["metadata"]["name"] for p in ds_pods(store)}

    store.merge_patch(
        DS, "default", "agent", {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "v2"}]}}}}
    )
    await wait_for(lambda: status(store).get("updatedNumberScheduled") == 0, what="updated count drops to 0")
    assert status(store)["observedGeneration"] == 2
    assert {p["metadata"]["name"] for p in ds_pods(store)} == old_names

    victim = sorted(old_names)[0]
    store.delete(PODS, "default", victim)
    await wait_for(
        lambda: all_running(store, 2) and victim not in {p["metadata"]["name"] for p in ds_pods(store)},
        what="replacement pod",
    )
    hashes = sorted(p["metadata"]["labels"]["controller-revision-hash"] for p in ds_pods(store))
    assert old_hash in hashes
    assert len(set(hashes)) == 2
    replacement = next(p for p in ds_pods(store) if p["metadata"]["name"] not in old_names)
    assert replacement["spec"]["containers"][0]["image"] == "v2"
    assert replacement["metadata"]["labels"]["pod-template-generation"] == "2"
    await wait_for(lambda: status(store).get("updatedNumberScheduled") == 1)


async def test_rolling_update_respects_max_unavailable(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "6")
    store.create(DS, daemonset(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}))
    await wait_for(lambda: all_running(store, 6), what="6 running pods")

    worst = 0

    def track(_: Any) -> None:
        nonlocal worst
        ready_nodes = {
            p["spec"]["nodeName"]
            for p in ds_pods(store)
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        }
        worst = max(worst, 6 - len(ready_nodes))

    store.subscribe(PODS, track)
    store.merge_patch(
        DS, "default", "agent", {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "v2"}]}}}}
    )
    new_hash_done = lambda: (  # noqa: E731
        all_running(store, 6)
        and {p["spec"]["containers"][0]["image"] for p in ds_pods(store)} == {"v2"}
        and status(store).get("updatedNumberScheduled") == 6
        and status(store).get("numberAvailable") == 6
    )
    await wait_for(new_hash_done, timeout=10, what="rollout to v2")
    assert 1 <= worst <= 2


async def test_rolling_update_percentage_and_not_ready_old_pods(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "4")
    assert controllers.kubelet is not None
    store.create(DS, daemonset(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}}))
    await wait_for(lambda: all_running(store, 4), what="4 running pods")
    controllers.kubelet.set_node_ready("node-3", False)
    await wait_for(lambda: status(store).get("numberReady") == 3, what="node-3 pod not ready")
    store.merge_patch(
        DS, "default", "agent", {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "v2"}]}}}}
    )
    # The not-ready old pod on node-3 is deleted at once (it stays Terminating while its node is NotReady).
    await wait_for(
        lambda: [bool(p["metadata"].get("deletionTimestamp")) for p in pods_by_node(store).get("node-3", [])] == [True],
        what="node-3 pod deleted",
    )
    controllers.kubelet.set_node_ready("node-3", True)
    await wait_for(
        lambda: all_running(store, 4) and {p["spec"]["containers"][0]["image"] for p in ds_pods(store)} == {"v2"},
        timeout=10,
        what="rollout to v2",
    )


async def test_node_deletion_collects_pods_and_updates_counts(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "3")
    store.create(DS, daemonset())
    await wait_for(lambda: all_running(store, 3))
    store.delete("v1/nodes", None, "node-1")
    await wait_for(lambda: sorted(pods_by_node(store)) == ["node-0", "node-2"], what="pod of node-1 collected")
    await wait_for(lambda: status(store).get("desiredNumberScheduled") == 2 and status(store)["numberReady"] == 2)
    add_nodes(store, "late-0")
    await wait_for(lambda: all_running(store, 3), what="pod on the new node")


async def test_failed_daemon_pod_is_replaced(store: FakeStore, controllers: Controllers) -> None:
    failed: list[dict[str, Any]] = []
    store.subscribe(
        PODS, lambda e: failed.append(e["object"]) if e["object"]["status"].get("phase") == "Failed" else None
    )
    add_nodes(store, "plain-0;dev-0:capacity=example.com/dev=1")
    store.create(DS, daemonset(resources={"limits": {"example.com/dev": "1"}}))
    await wait_for(
        lambda: [p["status"].get("phase") for p in pods_by_node(store).get("dev-0", [])] == ["Running"],
        what="running pod on dev-0",
    )
    await wait_for(lambda: failed, what="rejected pod on plain-0")
    assert failed[0]["spec"]["nodeName"] == "plain-0"
    assert failed[0]["status"]["reason"] == "OutOfexample.com/dev"
    first = failed[0]["metadata"]["name"]
    await wait_for(
        lambda: "plain-0" in pods_by_node(store) and first not in {p["metadata"]["name"] for p in ds_pods(store)},
        what="failed pod deleted and replaced",
    )


async def test_min_ready_seconds_delays_availability(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "1")
    # Ready times have a resolution of one second, so a pod is available 1 to 2 seconds after it is ready.
    store.create(DS, daemonset(min_ready_seconds=2))
    await wait_for(lambda: status(store).get("numberReady") == 1, what="ready")
    assert status(store)["numberAvailable"] == 0
    assert status(store)["numberUnavailable"] == 1
    await wait_for(lambda: status(store).get("numberAvailable") == 1, timeout=5, what="available after 2s")


async def test_deleting_daemonset_stops_management(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "2")
    store.create(DS, daemonset())
    store.create(DS, daemonset("witness"))
    await wait_for(lambda: all_running(store, 2))
    before = {p["metadata"]["name"] for p in ds_pods(store)}
    store.delete(DS, "default", "agent")
    add_nodes(store, "extra-0")
    await wait_for(lambda: "extra-0" in pods_by_node(store, "witness"), what="the controller saw the new node")
    # The deleted DaemonSet gets no new pod; its old ones stay (fake store) or are garbage collected (real store).
    assert {p["metadata"]["name"] for p in ds_pods(store)} <= before
