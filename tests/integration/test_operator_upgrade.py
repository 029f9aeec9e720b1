"""The node-by-node upgrade: the real operator against kubesim, with workloads, PodDisruptionBudgets, KMM load
failures, pauses, rollbacks and API errors."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import Cluster, simulated_cluster
from tests.integration.upgrade_support import (
    APPS,
    GATE,
    NAME,
    NEW,
    NS,
    OLD,
    ONLOAD_KEY,
    Watcher,
    budget,
    complete,
    nodes,
    plugin_pods,
    remove_budget,
    running_with_workloads,
    state,
    stays,
    tainted,
    upgrade_spec,
    upgrade_status,
    wait_phase,
    workload,
)

WORKERS = "worker-[0-4]:labels=node-role.kubernetes.io/worker="


@pytest.fixture
def five(tmp_path: Path) -> Iterator[Cluster]:
    """Five workers running Onload 8.1.2.26, each with one workload pod that uses it."""
    with simulated_cluster(tmp_path, nodes=WORKERS) as cluster:
        running_with_workloads(cluster, 5, 5)
        yield cluster


def policy(cluster: Cluster, **fields: Any) -> None:
    cluster.patch_onload(NS, NAME, {"spec": {"upgrade": fields}})


def test_a_version_change_moves_every_node_with_no_skew_and_one_eviction_per_pod(five: Cluster) -> None:
    budget(five, "traders", "trader", min_available=4)
    five.patch_onload(NS, NAME, upgrade_spec())
    watcher = Watcher(five)

    def replace_evicted() -> bool:
        """A ReplicaSet's part: an evicted trader comes back on a node that runs the new version."""
        present = {p.metadata.name for p in five.core.list_namespaced_pod(APPS).items}
        done = [n for n, node in nodes(five).items() if (node.metadata.labels or {}).get(GATE) == NEW]
        for index in range(5):
            if f"trader-{index}" not in present and f"trader-{index}-new" not in present and done:
                workload(five, done[0], f"trader-{index}-new")
        return complete(five, NEW, 5)

    watcher.until(replace_evicted, timeout=90, message="the rollout to complete")
    evicted = {pod.name: count for pod, count in five.sim.evictions().items()}
    assert evicted == {f"trader-{index}": 1 for index in range(5)}
    assert watcher.unavailable_seen == 1
    status = upgrade_status(five)
    assert (status["from"], status["to"], status["done"], status["failed"]) == (OLD, NEW, 5, 0)
    wait_for(lambda: five.daemonset(NS, names.device_plugin_revision_name(NAME, OLD)) is None)
    assert five.daemonset(NS, names.device_plugin_revision_name(NAME, NEW)) is not None
    ready = five.wait_ready(NS, NAME, selected=5, devicePluginReady=5)
    assert ready["status"]["version"] == NEW
    assert five.operator is not None
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{five.operator.metrics_port}/metrics", timeout=5).read()
    assert b'onload_operator_upgrade_nodes{name="onload",namespace="onload",state="done"} 5.0' in metrics
    reasons = [e.reason for e in five.events(NS, NAME)]
    assert reasons.count("NodeUpgraded") == 5
    node_events = [e for e in five.core.list_event_for_all_namespaces().items if e.involved_object.kind == "Node"]
    assert {e.involved_object.name for e in node_events if e.reason == "NodeUpgraded"} == {
        f"worker-{i}" for i in range(5)
    }


def test_max_parallel_and_max_unavailable_count_cordoned_nodes(five: Cluster) -> None:
    five.core.patch_node("worker-4", {"spec": {"unschedulable": True}})
    policy(five, maxParallel=3, maxUnavailable=2)
    five.patch_onload(NS, NAME, upgrade_spec())
    watcher = Watcher(five, max_unavailable=2)
    watcher.until(lambda: complete(five, NEW, 5), timeout=90, message="the rollout to complete")
    assert watcher.unavailable_seen == 2
    assert nodes(five)["worker-4"].spec.unschedulable is True  # the cordon is left as it was


@pytest.mark.parametrize("action", ["Fail", "SkipNode", "Force"])
def test_a_budget_that_blocks_eviction(five: Cluster, action: str) -> None:
    five.core.patch_namespaced_pod("trader-0", APPS, {"metadata": {"labels": {"app": "pinned"}}})
    budget(five, "trader-0", "pinned", min_available=1)
    policy(five, evictionTimeoutSeconds=2, onEvictionTimeout=action)
    five.patch_onload(NS, NAME, upgrade_spec())
    blocked = five.wait_reason(NS, NAME, "EvictionBlocked", type_="UpgradeBlocked")
    assert "worker-0" in blocked["message"]
    assert "trader-0" in blocked["message"]  # the disruption budget, as the API names it
    if action == "Fail":
        failed = wait_phase(five, "Failed", failed=1)
        assert failed["nodes"][0]["name"] == "worker-0"
        assert tainted(nodes(five)["worker-0"])
        condition = five.condition(NS, NAME, "UpgradeFailed")
        assert "worker-0" in condition["message"]
        assert "kubectl annotate node" in condition["message"]
        assert all(not tainted(n) for name, n in nodes(five).items() if name != "worker-0")
    elif action == "SkipNode":
        wait_for(lambda: complete_but(five, "worker-0"), timeout=90, message="the others to be upgraded")
        labels = nodes(five)["worker-0"].metadata.labels
        assert (labels[ONLOAD_KEY], labels[GATE]) == (OLD, OLD)
        assert not tainted(nodes(five)["worker-0"])
        assert upgrade_status(five)["skipped"] == 1
    else:
        wait_for(lambda: "trader-0" not in {p.metadata.name for p in five.core.list_namespaced_pod(APPS).items})
        wait_phase(five, "Complete", timeout=90, done=5)


def complete_but(cluster: Cluster, skipped: str) -> bool:
    status = upgrade_status(cluster)
    others = [n for name, n in nodes(cluster).items() if name != skipped]
    return status.get("phase") == "Complete" and all(
        (n.metadata.labels or {}).get(GATE) == NEW and not tainted(n) for n in others
    )


def hold_plugin(cluster: Cluster, node: str) -> str:
    """Keep the node's device-plugin pod Terminating (a finalizer) until released."""
    pod = plugin_pods(cluster, node)[0]
    cluster.core.patch_namespaced_pod(pod.metadata.name, NS, {"metadata": {"finalizers": ["test/hold"]}})
    return str(pod.metadata.name)


def set_ready(cluster: Cluster, node: str, ready: bool) -> None:
    """The node's kubelet stops (or resumes) posting Ready: no new pod starts there meanwhile."""
    controllers = cluster.sim.controllers
    assert controllers is not None
    assert controllers.kubelet is not None
    cluster.sim.call(controllers.kubelet.set_node_ready, node, ready)


@pytest.mark.parametrize("step", ["StopDevicePlugin", "EvictPods", "LoadModules", "StartDevicePlugin"])
def test_pause_keeps_every_node_where_it_is_and_resume_finishes(five: Cluster, step: str) -> None:
    release: Any
    if step == "StopDevicePlugin":
        pod = hold_plugin(five, "worker-0")

        def release() -> None:
            five.core.patch_namespaced_pod(pod, NS, {"metadata": {"finalizers": None}})
    elif step == "EvictPods":
        budget(five, "hold", "trader", min_available=5)

        def release() -> None:
            remove_budget(five, "hold")
    elif step == "LoadModules":
        five.sim.kmm.fail_load("worker-0", NEW)

        def release() -> None:
            five.sim.kmm.clear_load_failure("worker-0", NEW)
    else:
        five.sim.kmm.fail_load("worker-0", NEW)  # held at LoadModules until the node stops starting pods

        def release() -> None:
            set_ready(five, "worker-0", True)

    five.patch_onload(NS, NAME, upgrade_spec())
    if step == "StartDevicePlugin":
        wait_for(lambda: (state(nodes(five)["worker-0"]) or {}).get("step") == "LoadModules")
        set_ready(five, "worker-0", False)
        five.sim.kmm.clear_load_failure("worker-0", NEW)
    wait_for(lambda: (state(nodes(five)["worker-0"]) or {}).get("step") == step, message=f"worker-0 at {step}")
    policy(five, paused=True)
    wait_phase(five, "Paused")
    held = state(nodes(five)["worker-0"])
    assert held is not None
    assert held.get("paused")
    release()

    def frozen() -> bool:
        current = nodes(five)
        others = [n for name, n in current.items() if name != "worker-0"]
        return (state(current["worker-0"]) or {}).get("step") == step and not any(tainted(n) for n in others)

    stays(frozen, 1.0, "nothing moves while paused, though what the step waited for is there now")
    policy(five, paused=False)
    wait_for(lambda: complete(five, NEW, 5), timeout=90, message="the rollout to finish")


def test_module_failure_stops_the_rollout_and_a_rollback_recovers(five: Cluster) -> None:
    five.sim.kmm.fail_load("worker-0", NEW)
    policy(five, moduleTimeoutSeconds=2)
    five.patch_onload(NS, NAME, upgrade_spec())
    failed = wait_phase(five, "Failed", failed=1)
    assert failed["nodes"][0]["step"] == "Failed"
    assert "KMM did not report" in failed["nodes"][0]["reason"]
    assert all(not state(n) for name, n in nodes(five).items() if name != "worker-0")  # it did not spread
    five.patch_onload(NS, NAME, upgrade_spec(OLD))
    wait_for(lambda: complete(five, OLD, 5), timeout=90, message="the rollback")
    five.wait_ready(NS, NAME, selected=5, devicePluginReady=5)


def test_a_plugin_pod_deleted_on_a_node_not_upgraded_comes_back_with_its_version(five: Cluster) -> None:
    budget(five, "hold", "trader", min_available=5)  # worker-0 stays in EvictPods
    five.patch_onload(NS, NAME, upgrade_spec())
    wait_for(lambda: (state(nodes(five)["worker-0"]) or {}).get("step") == "EvictPods")
    old = plugin_pods(five, "worker-3")[0]
    five.core.delete_namespaced_pod(old.metadata.name, NS)

    def replaced() -> Any:
        pods = [p for p in plugin_pods(five, "worker-3") if p.metadata.uid != old.metadata.uid]
        return pods[0] if pods else None

    pod = wait_for(replaced, message="a new device-plugin pod on worker-3")
    assert pod.metadata.labels[names.NAME_LABEL] == names.device_plugin_revision_name(NAME, OLD)
    assert pod.spec.init_containers[0].image == f"onload-user:{OLD}"


def test_api_errors_do_not_stop_the_rollout(five: Cluster) -> None:
    five.sim.faults.update({"errorRate": 0.1, "errorCodes": [500, 503, 429]})
    five.patch_onload(NS, NAME, upgrade_spec())

    def replace_and_check() -> bool:
        return complete(five, NEW, 5)

    Watcher(five).until(replace_and_check, timeout=120, message="the rollout under API errors")
    five.sim.faults.update({"errorRate": 0.0})
    evicted = five.sim.evictions()
    assert all(count == 1 for count in evicted.values())
