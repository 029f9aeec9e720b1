"""Nodes leaving a CR: the device plugin stops before KMM unloads the modules. The real operator against kubesim."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.node_order import UnloadOrder, changes_since
from tests.integration.operator_harness import Cluster, onload_body, simulated_cluster

NS = "onload"
GATE = names.onload_label(NS, "onload")
ONLOAD_KEY = names.kmm_version_label(NS, "onload-module")
SELECTOR_KEY = names.module_selector_label(NS, "onload")
READY = names.kmm_ready_label(NS, "onload-module")
WORKER = "node-role.kubernetes.io/worker"
HOLD = "test.onload.amd.com/hold"
UNLOAD_WORKER = "kmm.node.kubernetes.io/worker-action"


def plugin_pod(cluster: Cluster, node: str) -> str:
    pods = cluster.core.list_namespaced_pod(
        NS, label_selector=f"{names.NAME_LABEL}={names.device_plugin_revision_name('onload', '8.1.2.26')}"
    ).items
    return str(next(pod.metadata.name for pod in pods if pod.spec.node_name == node))


def test_unselected_node_keeps_its_modules_until_its_device_plugin_pod_is_gone(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    assert cluster.module(NS, "onload-module")["spec"]["selector"] == {SELECTOR_KEY: ""}
    # A finalizer holds the device-plugin pod of worker-0 in Terminating, as a slow preStop hook would.
    pod = plugin_pod(cluster, "worker-0")
    cluster.core.patch_namespaced_pod(pod, NS, {"metadata": {"finalizers": [HOLD]}})
    order = UnloadOrder(cluster, NS, "onload", "worker-0")
    order.observe()
    cluster.label_node("worker-0", {WORKER: None})
    wait_for(
        lambda: (
            GATE not in cluster.node_labels()["worker-0"]
            and cluster.core.read_namespaced_pod(pod, NS).metadata.deletion_timestamp is not None
        ),
        message="the gate label removed and the device-plugin pod terminating",
    )
    assert cluster.operator is not None
    converged = cluster.operator.context.metrics.reconciles.labels("converged")
    count = converged._value.get()
    cluster.label_node("worker-0", {"unrelated": "x"})  # wakes the CR: the node carries its labels
    wait_for(partial(lambda seen: converged._value.get() > seen, count), message="a reconcile that waits for the pod")
    order.observe()
    labels = cluster.node_labels()["worker-0"]
    assert {READY, ONLOAD_KEY, SELECTOR_KEY} <= set(labels), "the modules must stay while the device plugin stops"
    cluster.core.patch_namespaced_pod(pod, NS, {"metadata": {"finalizers": None}})
    wait_for(order.unloaded, message="the modules unloaded from worker-0 once its device-plugin pod is gone")
    order.assert_plugin_stopped_first()
    assert not {GATE, ONLOAD_KEY, SELECTOR_KEY} & set(cluster.node_labels()["worker-0"])
    cluster.wait_ready(NS, "onload", selected=2, moduleReady=2, devicePluginReady=2)


def test_selector_edit_unloads_only_after_the_device_plugin_left(cluster: Cluster) -> None:
    cluster.label_node("worker-2", {"pool": "b"})
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    orders = [UnloadOrder(cluster, NS, "onload", node) for node in ("worker-0", "worker-1")]
    for order in orders:
        order.observe()
    cluster.patch_onload(NS, "onload", {"spec": {"selector": {WORKER: None, "pool": "b"}}})
    for order in orders:
        wait_for(order.unloaded, message=f"the modules unloaded from {order.node}")
        order.assert_plugin_stopped_first()
    assert cluster.module(NS, "onload-module")["spec"]["selector"] == {SELECTOR_KEY: ""}
    cluster.wait_ready(NS, "onload", selected=1)


@pytest.mark.parametrize(
    "previous_manager",
    [names.MANAGER, "manager"],  # an earlier version of this operator; the Go operator (controller-runtime)
)
def test_takeover_of_modules_selecting_spec_selector_unloads_nowhere(tmp_path: Path, previous_manager: str) -> None:
    with simulated_cluster(tmp_path, kmm_worker_pods=True) as cluster:
        cluster.start_operator()
        cluster.create_onload(onload_body())
        cluster.wait_ready(NS, "onload")
        cluster.stop_operator()
        # What an operator version whose Modules selected spec.selector leaves: such Modules, nodes without the label.
        module = cluster.module(NS, "onload-module")
        old_module = {
            "apiVersion": module["apiVersion"],
            "kind": "Module",
            "metadata": {key: module["metadata"][key] for key in ("name", "namespace", "labels", "ownerReferences")},
            "spec": {**module["spec"], "selector": {WORKER: ""}},
        }
        if previous_manager == names.MANAGER:
            cluster.patch_module(NS, "onload-module", old_module, manager=previous_manager, apply=True)
        else:
            # Another manager's update: it owns the selector key, which this operator's applies never remove.
            patch = {"spec": {"selector": {WORKER: "", SELECTOR_KEY: None}}}
            cluster.patch_module(NS, "onload-module", patch, manager=previous_manager)
        assert cluster.module(NS, "onload-module")["spec"]["selector"] == {WORKER: ""}
        for node in ("worker-0", "worker-1", "worker-2"):
            cluster.label_node(node, {SELECTOR_KEY: None})
        since = cluster.core.list_node().metadata.resource_version
        assert all(READY in labels for labels in cluster.node_labels().values())
        cluster.start_operator()
        wait_for(
            lambda: cluster.module(NS, "onload-module")["spec"]["selector"] == {SELECTOR_KEY: ""},
            message="the Module selecting the operator's label",
        )
        cluster.wait_ready(NS, "onload")
        nodes = changes_since(cluster.core.list_node, since)
        assert {n["metadata"]["name"] for n in nodes if SELECTOR_KEY in n["metadata"]["labels"]} == {
            "worker-0",
            "worker-1",
            "worker-2",
        }
        assert [n["metadata"]["name"] for n in nodes if READY not in n["metadata"]["labels"]] == []
        unloads = changes_since(
            cluster.core.list_namespaced_pod, since, namespace=NS, label_selector=f"{UNLOAD_WORKER}=unload"
        )
        assert [pod["metadata"]["name"] for pod in unloads] == [], "KMM started to unload during the takeover"
