"""Create, converge, stay idle, update, repair drift, follow nodes, and delete: the real operator against kubesim."""

from __future__ import annotations

import urllib.request
from functools import partial
from pathlib import Path

import yaml

import kubesim
from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.node_order import UnloadOrder
from tests.integration.operator_harness import IMAGE, Cluster, onload_body, simulated_cluster
from tests.integration.upgrade_support import complete

NS = "onload"
GATE = names.onload_label(NS, "onload")
ONLOAD_KEY = names.kmm_version_label(NS, "onload-module")
DS = names.device_plugin_revision_name("onload", "8.1.2.26")


def labelled(cluster: Cluster, key: str) -> set[str]:
    return {node for node, labels in cluster.node_labels().items() if key in labels}


def test_create_converges_with_status_events_and_metrics(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    body = cluster.wait_ready(NS, "onload")
    assert body["status"]["nodes"] == {"selected": 3, "moduleReady": 3, "devicePluginReady": 3}
    assert body["status"]["version"] == "8.1.2.26"
    assert names.FINALIZER in body["metadata"]["finalizers"]
    module = cluster.module(NS, "onload-module")
    assert module is not None
    assert module["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert cluster.module(NS, "onload-sfcmod") is None
    ds = cluster.daemonset(NS, DS)
    assert ds.spec.template.spec.containers[0].image == IMAGE
    assert labelled(cluster, GATE) == {"worker-0", "worker-1", "worker-2"}
    assert labelled(cluster, ONLOAD_KEY) == {"worker-0", "worker-1", "worker-2"}
    managers = {entry["manager"] for entry in module["metadata"]["managedFields"]}
    assert names.MANAGER in managers
    wait_for(
        lambda: (
            {e.reason for e in cluster.events(NS, "onload")}
            >= {"Created", "LoadingModules", "StartingDevicePlugin", "AllNodesReady"}
        ),
        message="the Events of a rollout",
    )
    assert cluster.operator is not None
    port = cluster.operator.metrics_port
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'onload_operator_nodes{name="onload",namespace="onload",stage="device_plugin_ready"} 3.0' in metrics
    assert 'onload_operator_ready{name="onload",namespace="onload"} 1.0' in metrics
    assert "onload_operator_reconcile_duration_seconds_count" in metrics


def test_converged_cr_causes_no_writes_when_reconciled_again(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    # The AllNodesReady Event is the last write of the reconcile that made the CR Ready.
    wait_for(lambda: "AllNodesReady" in {e.reason for e in cluster.events(NS, "onload")})
    assert any(r.agent == names.MANAGER for r in cluster.operator_writes())
    assert cluster.operator is not None
    converged = cluster.operator.context.metrics.reconciles.labels("converged")
    writes_before = len(cluster.operator_writes())
    for value in ("x", "y"):
        count = converged._value.get()
        cluster.label_node("worker-0", {"unrelated": value})  # wakes the CR: the node matches its selector
        wait_for(partial(lambda seen: converged._value.get() > seen, count), message="a reconcile with nothing to do")
    assert cluster.operator_writes()[writes_before:] == []


def test_safe_spec_changes_are_applied(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.patch_onload(NS, "onload", {"spec": {"serviceAccountName": "sa-2"}})
    wait_for(lambda: cluster.daemonset(NS, DS).spec.template.spec.service_account_name == "sa-2")
    wait_for(lambda: cluster.module(NS, "onload-module")["spec"]["moduleLoader"]["serviceAccountName"] == "sa-2")
    cluster.wait_ready(NS, "onload")


def test_pull_secrets_and_kernel_mappings(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.patch_onload(NS, "onload", {"spec": {"imagePullSecrets": [{"name": "regcred"}, {"name": "other"}]}})
    wait_for(lambda: cluster.module(NS, "onload-module")["spec"].get("imageRepoSecret") == {"name": "regcred"})
    wait_for(
        lambda: (
            [s.name for s in cluster.daemonset(NS, DS).spec.template.spec.image_pull_secrets or []]
            == ["regcred", "other"]
        ),
        message="the DaemonSet's pull secrets",
    )
    # A kernel mapping for a kernel no node runs changes nothing on the nodes: it applies at once.
    mappings = cluster.onload(NS, "onload")["spec"]["onload"]["kernelMappings"]
    extra = {"regexp": "^6\\.99\\.", "kernelModuleImage": "onload-module:new"}
    cluster.patch_onload(NS, "onload", {"spec": {"onload": {"kernelMappings": [*mappings, extra]}}})
    wait_for(
        lambda: len(cluster.module(NS, "onload-module")["spec"]["moduleLoader"]["container"]["kernelMappings"]) == 2,
        message="the new mapping in the Module",
    )
    container = cluster.module(NS, "onload-module")["spec"]["moduleLoader"]["container"]
    assert container["version"] == "8.1.2.26"
    assert "upgrade" not in cluster.wait_ready(NS, "onload")["status"]
    # Removing the secrets is applied too (fields the operator no longer sets are dropped by server-side apply).
    cluster.patch_onload(NS, "onload", {"spec": {"imagePullSecrets": []}})
    # (kubesim leaves the emptied map `imageRepoSecret: {}` behind where Kubernetes drops it; the name is gone.)
    wait_for(
        lambda: not (cluster.module(NS, "onload-module")["spec"].get("imageRepoSecret") or {}).get("name"),
        message="secret dropped",
    )
    wait_for(lambda: not cluster.daemonset(NS, DS).spec.template.spec.image_pull_secrets, message="DS secrets dropped")


def test_selector_change_moves_onload_between_nodes(cluster: Cluster) -> None:
    cluster.label_node("worker-2", {"pool": "b"})
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.patch_onload(NS, "onload", {"spec": {"selector": {"node-role.kubernetes.io/worker": None, "pool": "b"}}})
    wait_for(lambda: labelled(cluster, GATE) == {"worker-2"}, message="only worker-2 keeps the gate label")
    # The KMM labels go once the device-plugin pods have left those nodes.
    wait_for(lambda: labelled(cluster, ONLOAD_KEY) == {"worker-2"}, message="modules unloaded from the others")
    # The Modules select the label the operator moves, not spec.selector (KMM would unload under the plugin).
    assert cluster.module(NS, "onload-module")["spec"]["selector"] == {names.module_selector_label(NS, "onload"): ""}
    assert cluster.daemonset(NS, DS).spec.template.spec.node_selector == {"pool": "b"}
    cluster.wait_ready(NS, "onload", selected=1)


def test_version_change_rolls_out_node_by_node(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.patch_onload(NS, "onload", {"spec": {"onload": {"version": "9.0.0", "userImage": "onload-user:9.0.0"}}})
    condition = cluster.wait_reason(NS, "onload", "Progressing", type_="Upgrading")
    assert "8.1.2.26 -> 9.0.0" in condition["message"]
    assert cluster.condition(NS, "onload")["reason"] == "Upgrading"  # Ready=False: not every node runs 9.0.0
    wait_for(lambda: complete(cluster, "9.0.0", 3), timeout=60, message="the rollout")
    body = cluster.wait_ready(NS, "onload", selected=3, devicePluginReady=3)
    assert body["status"]["upgrade"]["progress"] == "3/3"
    ds = cluster.daemonset(NS, names.device_plugin_revision_name("onload", "9.0.0"))
    assert ds.spec.template.spec.init_containers[0].image == "onload-user:9.0.0"
    wait_for(lambda: cluster.daemonset(NS, DS) is None, message="the DaemonSet of 8.1.2.26 deleted")


def test_edited_and_deleted_children_are_restored(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.patch_module(NS, "onload-module", {"spec": {"moduleLoader": {"container": {"version": "0.0.1"}}}})
    wait_for(
        lambda: cluster.module(NS, "onload-module")["spec"]["moduleLoader"]["container"]["version"] == "8.1.2.26",
        message="the Module's version restored",
    )
    cluster.apps.delete_namespaced_daemon_set(DS, NS)
    wait_for(lambda: cluster.daemonset(NS, DS) is not None, message="the DaemonSet recreated")
    cluster.wait_ready(NS, "onload")
    assert {e.reason for e in cluster.events(NS, "onload")} >= {"DriftRepaired"}


def test_nodes_joining_leaving_and_relabelled(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.sim.add_nodes("late-0:labels=node-role.kubernetes.io/worker=")
    wait_for(lambda: "late-0" in labelled(cluster, GATE), message="the new node gets the gate label")
    cluster.wait_ready(NS, "onload", selected=4)
    order = UnloadOrder(cluster, NS, "onload", "worker-0")
    order.observe()
    cluster.label_node("worker-0", {"node-role.kubernetes.io/worker": None})
    wait_for(order.unloaded, message="the device plugin and then the modules gone from worker-0")
    order.assert_plugin_stopped_first()
    assert "worker-0" not in labelled(cluster, ONLOAD_KEY) | labelled(cluster, GATE)
    cluster.core.delete_node("worker-1")
    # The DaemonSet's status counts the deleted node's pod until the DaemonSet controller catches up.
    cluster.wait_ready(NS, "onload", selected=2, devicePluginReady=2)


def test_deletion_removes_labels_and_children(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.delete_onload(NS, "onload")
    wait_for(lambda: not cluster.onload_exists(NS, "onload"), message="the CR is gone")
    assert labelled(cluster, GATE) == set()
    assert labelled(cluster, ONLOAD_KEY) == set()
    wait_for(lambda: cluster.module(NS, "onload-module") is None and cluster.daemonset(NS, DS) is None, message="GC")


def test_children_run_on_a_node_with_the_upgrade_taint(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.sim.add_nodes(
        f"tainted-0:labels=node-role.kubernetes.io/worker=:taints={names.UPGRADE_TAINT}=9.0.0:NoSchedule"
    )
    cluster.wait_ready(NS, "onload", selected=4, moduleReady=4, devicePluginReady=4)
    pods = cluster.core.list_namespaced_pod(NS, field_selector="spec.nodeName=tainted-0").items
    assert any(p.metadata.name.startswith(DS) and p.status.phase == "Running" for p in pods)


def test_selecting_no_node_reports_it_and_clears_the_version(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    assert cluster.wait_ready(NS, "onload")["status"]["version"] == "8.1.2.26"
    cluster.patch_onload(NS, "onload", {"spec": {"selector": {"pool": "none"}}})
    cluster.wait_reason(NS, "onload", "NoNodesSelected")
    wait_for(lambda: "version" not in cluster.onload(NS, "onload")["status"], message="status.version removed")
    assert labelled(cluster, ONLOAD_KEY) == set()


def test_a_cr_with_a_large_spec_is_created_updated_and_deleted(cluster: Cluster) -> None:
    """kopf's diff base would copy the spec into an annotation, and a 160 KB spec doubled passes the API
    server's 256 KiB limit on annotations: every later write of the CR (its finalizer included) would be refused."""
    secrets = [{"name": f"pull-secret-{index:04d}-" + "x" * 200} for index in range(900)]
    cluster.create_onload(onload_body(imagePullSecrets=secrets))
    cluster.wait_ready(NS, "onload", timeout=60)
    annotations = cluster.onload(NS, "onload")["metadata"].get("annotations") or {}
    assert sum(len(key) + len(value) for key, value in annotations.items()) < 4096
    cluster.patch_onload(NS, "onload", {"spec": {"devicePlugin": {"maxPodsPerNode": 9}}})
    cluster.wait_ready(NS, "onload", timeout=60)
    cluster.delete_onload(NS, "onload")
    wait_for(lambda: not cluster.onload_exists(NS, "onload"), timeout=30, message="the CR is deleted")
    assert not labelled(cluster, GATE)


def test_a_cr_without_a_device_plugin_block_converges_with_the_defaults(cluster: Cluster) -> None:
    body = onload_body()
    del body["spec"]["devicePlugin"]
    cluster.create_onload(body)
    stored = cluster.wait_ready(NS, "onload")
    assert stored["spec"]["devicePlugin"]["hostOnloadPath"] == "/opt/onload/"
    args = cluster.daemonset(NS, DS).spec.template.spec.containers[0].args
    assert "-maxPods=100" in args


def test_modules_carry_no_tolerations_under_a_kmm_that_does_not_know_them(tmp_path: Path) -> None:
    """KMM before 2.3 has no Module spec.tolerations: the API server prunes it, so rendering it would make every
    reconcile see drift and write the Module again."""
    crd = yaml.safe_load((Path(kubesim.__file__).parent / "crds" / "kmm.sigs.x-k8s.io_modules.yaml").read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec_schema["properties"]["tolerations"]
    with simulated_cluster(tmp_path) as cluster:
        cluster.sim.call(cluster.sim.apply_object, crd)
        cluster.start_operator()
        cluster.create_onload(onload_body())
        cluster.wait_ready(NS, "onload")
        module = cluster.module(NS, "onload-module")
        assert module is not None
        assert "tolerations" not in module["spec"]
        wait_for(lambda: "AllNodesReady" in {e.reason for e in cluster.events(NS, "onload")})
        assert cluster.operator is not None
        converged = cluster.operator.context.metrics.reconciles.labels("converged")
        writes_before = len(cluster.operator_writes())
        count = converged._value.get()
        # Another manager's label moves the Module past the version the operator last applied: it is compared again.
        cluster.patch_module(NS, "onload-module", {"metadata": {"labels": {"team": "x"}}}, manager="someone")
        wait_for(lambda: converged._value.get() > count, message="a reconcile with nothing to do")
        assert cluster.operator_writes()[writes_before:] == []


def test_fields_added_by_hand_to_the_children_are_removed(cluster: Cluster) -> None:
    """Server-side apply never removes what another manager added: a container, an env var and a hostPath volume
    added by hand go, and then the CR is converged again with no write."""
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    template = cluster.daemonset(NS, DS).spec.template.spec
    plugin = template.containers[0].name
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "busybox"},
                        {"name": plugin, "env": [{"name": "EXTRA", "value": "1"}]},
                    ],
                    "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
                }
            }
        }
    }
    cluster.apps.patch_namespaced_daemon_set(DS, NS, patch, field_manager="someone")
    cluster.patch_module(NS, "onload-module", {"spec": {"moduleLoader": {"container": {"extra": "x"}}}}, "someone")

    def cleaned() -> bool:
        pod = cluster.daemonset(NS, DS).spec.template.spec
        env = {e.name for c in pod.containers for e in c.env or []}
        module = cluster.module(NS, "onload-module")["spec"]["moduleLoader"]["container"]
        return (
            "sidecar" not in {c.name for c in pod.containers}
            and "EXTRA" not in env
            and "host-root" not in {v.name for v in pod.volumes}
            and "extra" not in module
        )

    wait_for(cleaned, message="the fields added by hand removed")
    wait_for(
        lambda: any(e.reason == "DriftRepaired" and "someone" in e.message for e in cluster.events(NS, "onload")),
        message="a DriftRepaired Event naming the manager",
    )
    cluster.wait_ready(NS, "onload")
    assert cluster.operator is not None
    converged = cluster.operator.context.metrics.reconciles.labels("converged")
    writes_before = 0
    for value in ("x", "y"):  # the first pass may still write the status; the second finds nothing to do
        writes_before = len(cluster.operator_writes())
        count = converged._value.get()
        cluster.label_node("worker-0", {"unrelated": value})
        wait_for(partial(lambda seen: converged._value.get() > seen, count), message="a reconcile with nothing to do")
    assert cluster.operator_writes()[writes_before:] == []
