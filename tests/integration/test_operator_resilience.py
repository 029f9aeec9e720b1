"""Operator restarts, deletion while it is down, leftovers of deleted CRs and API errors on 10% of requests."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client

import kubesim
from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import Cluster, onload_body, simulated_cluster

NS = "onload"
GATE = names.onload_label(NS, "onload")
ONLOAD_KEY = names.kmm_version_label(NS, "onload-module")


def carrying(cluster: Cluster, *keys: str) -> set[str]:
    return {node for node, labels in cluster.node_labels().items() if set(keys) & set(labels)}


def delete_accepted(cluster: Cluster) -> bool:
    cluster.delete_onload(NS, "onload")
    return True


def converged_reconciles(cluster: Cluster) -> float:
    assert cluster.operator is not None
    value: float = cluster.operator.context.metrics.reconciles.labels("converged")._value.get()
    return value


def test_restarted_operator_finds_nothing_to_write(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    wait_for(lambda: "AllNodesReady" in {e.reason for e in cluster.events(NS, "onload")})
    cluster.stop_operator()
    writes_before = len(cluster.operator_writes())
    cluster.start_operator()
    wait_for(lambda: converged_reconciles(cluster) >= 1, message="the first reconcile after the restart")
    assert cluster.operator_writes()[writes_before:] == []
    assert cluster.operator is not None
    assert cluster.operator.context.metrics.ready.labels(NS, "onload")._value.get() == 1


def test_deletion_while_the_operator_is_down_is_finished_on_start(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.stop_operator()
    cluster.delete_onload(NS, "onload")
    assert cluster.onload(NS, "onload")["metadata"]["deletionTimestamp"]  # held by the finalizer
    assert carrying(cluster, GATE) == {"worker-0", "worker-1", "worker-2"}
    cluster.start_operator()
    wait_for(lambda: not cluster.onload_exists(NS, "onload"), message="the CR released")
    assert carrying(cluster, GATE, ONLOAD_KEY) == set()


def test_labels_of_a_cr_deleted_without_finalizer_are_removed_on_start(tmp_path: Path) -> None:
    # A CR of an operator that set no finalizer (the Go operator), deleted while nothing ran.
    with simulated_cluster(tmp_path) as cluster:
        leftovers: dict[str, str | None] = {
            names.onload_label("old", "gone"): "3.0",
            names.kmm_version_label("old", "gone-module"): "3.0",
        }
        cluster.label_node("worker-1", leftovers)
        cluster.label_node("worker-2", {"onload.amd.com/team.a": "kept"})
        cluster.start_operator()
        wait_for(lambda: carrying(cluster, *leftovers) == set(), message="leftover labels removed")
        assert cluster.node_labels()["worker-2"]["onload.amd.com/team.a"] == "kept"


def test_converges_with_errors_injected_into_ten_percent_of_requests(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path, nodes="worker-[0-19]:labels=node-role.kubernetes.io/worker=") as cluster:
        cluster.start_operator()
        cluster.sim.faults.update({"errorRate": 0.1, "errorCodes": [500, 429, 409, 503]})
        wait_for(lambda: cluster.create_onload(onload_body()), message="the CR created despite the faults")
        body = cluster.wait_ready(NS, "onload", timeout=60)
        assert body["status"]["nodes"] == {"selected": 20, "moduleReady": 20, "devicePluginReady": 20}
        assert cluster.operator is not None
        faults = [r for r in cluster.requests if r.by_operator and r.status in {409, 429, 500, 503}]
        assert faults  # the faults hit the operator's own requests (about 60 of them: p(none) < 0.2%)
        wait_for(lambda: carrying(cluster, GATE) == {f"worker-{i}" for i in range(20)})
        wait_for(lambda: delete_accepted(cluster), message="delete accepted")
        wait_for(lambda: not cluster.onload_exists(NS, "onload"), timeout=60, message="deletion despite the faults")
        cluster.sim.faults.update({"errorRate": 0.0})
        assert carrying(cluster, GATE, ONLOAD_KEY) == set()


def test_missing_kmm_is_reported_as_degraded(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path, kmm=False) as cluster:
        extensions = client.ApiextensionsV1Api(cluster.core.api_client)
        extensions.delete_custom_resource_definition("modules.kmm.sigs.x-k8s.io")
        wait_for(lambda: "modules.kmm.sigs.x-k8s.io" not in cluster.sim.crd_names(), message="KMM CRD gone")
        cluster.start_operator()
        cluster.create_onload(onload_body())
        degraded = cluster.wait_reason(NS, "onload", "KmmMissing", type_="Degraded")
        assert "install Kernel Module Management" in degraded["message"]
        assert carrying(cluster, GATE, ONLOAD_KEY) == set()


def test_operator_limited_to_namespaces_leaves_the_others_alone(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path) as cluster:
        cluster.core.create_namespace({"metadata": {"name": "elsewhere"}})
        # Onload of a CR in a namespace this operator does not serve, running on worker-2.
        foreign = {
            names.onload_label("elsewhere", "outside"): "8.1.2.26",
            names.kmm_version_label("elsewhere", names.module_name("outside")): "8.1.2.26",
        }
        cluster.core.patch_node("worker-2", {"metadata": {"labels": foreign}})
        cluster.start_operator(namespaces=(NS,))
        cluster.create_onload(onload_body(name="outside", namespace="elsewhere", selector={"pool": "none"}))
        cluster.create_onload(onload_body())
        cluster.wait_ready(NS, "onload")
        labels = cluster.core.read_node("worker-2").metadata.labels
        assert foreign.items() <= labels.items()
        outside = cluster.onload("elsewhere", "outside")
        assert "status" not in outside
        assert names.FINALIZER not in (outside["metadata"].get("finalizers") or [])


def test_refused_cr_with_a_very_long_name_can_be_deleted(cluster: Cluster) -> None:
    """Its node-label keys are too long to be labels, so they must not be sent as label selectors (400)."""
    namespace = "a-namespace-whose-name-is-long"  # 30 characters, + 16 = 46: keys over 63 characters
    cluster.core.create_namespace({"metadata": {"name": namespace}})
    cluster.create_onload(onload_body(name="onload-with-name", namespace=namespace))
    cluster.wait_reason(namespace, "onload-with-name", "NameTooLong")
    cluster.delete_onload(namespace, "onload-with-name")
    wait_for(lambda: not cluster.onload_exists(namespace, "onload-with-name"), message="the refused CR deleted")


def test_a_refused_write_is_reported_with_the_server_message_object_and_field(tmp_path: Path) -> None:
    """A Module the installed KMM's schema refuses: Degraded=ApiRefused says which object and field, and why."""
    crd = yaml.safe_load((Path(kubesim.__file__).parent / "crds" / "kmm.sigs.x-k8s.io_modules.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    container = spec["properties"]["moduleLoader"]["properties"]["container"]
    container["properties"]["modprobe"]["properties"]["moduleName"]["maxLength"] = 3
    with simulated_cluster(tmp_path) as cluster:
        cluster.sim.call(cluster.sim.apply_object, crd)
        cluster.start_operator(degraded_after_failures=1)
        cluster.create_onload(onload_body())
        degraded = cluster.wait_reason(NS, "onload", "ApiRefused", type_="Degraded")
        message = degraded["message"]
        assert "API error 422" in message
        assert "onload-module" in message
        assert "spec.moduleLoader.container.modprobe.moduleName" in message
        assert "Too long" in message
