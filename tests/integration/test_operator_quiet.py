"""The operator says only what is true, once: Events aggregate under node churn, a missing KMM is one Warning."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kubernetes import client

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import Cluster, onload_body, simulated_cluster

NS = "onload"
GATE = names.onload_label(NS, "onload")
ROLE = "node-role.kubernetes.io/worker"
FLAPS = 6


def carrying(cluster: Cluster, node: str, key: str) -> bool:
    return key in cluster.node_labels().get(node, {})


def test_node_churn_posts_one_event_per_reason_with_its_count(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    for flap in range(FLAPS):
        cluster.label_node("worker-0", {ROLE: None})
        wait_for(lambda: not carrying(cluster, "worker-0", GATE), message=f"worker-0 left ({flap})")
        cluster.label_node("worker-0", {ROLE: ""})
        cluster.wait_ready(NS, "onload", selected=3, moduleReady=3, devicePluginReady=3)
    cluster.sim.add_nodes("late-0:labels=node-role.kubernetes.io/worker=")
    cluster.wait_ready(NS, "onload", selected=4, moduleReady=4, devicePluginReady=4)
    cluster.core.delete_node("late-0")
    cluster.wait_ready(NS, "onload", selected=3, devicePluginReady=3)

    events = cluster.events(NS, "onload")
    # Created and Updated Events are one per child written.
    objects = Counter((e.type, e.reason, e.message if e.reason in {"Created", "Updated"} else "") for e in events)
    assert max(objects.values()) == 1, objects  # one Event per type and reason (and child written)
    assert len(events) <= 10
    counts = {e.reason: e.count for e in events}
    assert counts["StoppingDevicePlugin"] == FLAPS
    assert counts["StartingDevicePlugin"] >= FLAPS + 2  # the creation (maybe in steps), each return, the late node


def test_missing_kmm_is_one_warning_and_nothing_else(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path, kmm=False) as cluster:
        extensions = client.ApiextensionsV1Api(cluster.core.api_client)
        extensions.delete_custom_resource_definition("modules.kmm.sigs.x-k8s.io")
        wait_for(lambda: "modules.kmm.sigs.x-k8s.io" not in cluster.sim.crd_names(), message="KMM CRD gone")
        operator = cluster.start_operator()
        cluster.create_onload(onload_body())
        cluster.wait_reason(NS, "onload", "ReconcileError", type_="Degraded")
        failed = operator.context.metrics.reconciles.labels("error")
        seen = failed._value.get()
        wait_for(lambda: failed._value.get() >= seen + 3, message="three more failed passes")
        (event,) = cluster.events(NS, "onload")
        assert event.type == "Warning"
        assert "install Kernel Module Management" in event.message
