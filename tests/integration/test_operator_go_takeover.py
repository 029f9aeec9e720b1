"""Taking over what the Go operator's first release (v3.0) left: unlabelled Modules and a DaemonSet whose
immutable selector is ``onload.amd.com/name`` alone. The real operator against kubesim."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.go_operator import leave_as_go_v3_0, live_daemonset
from tests.integration.node_order import assert_old_pods_deleted_before_new_ones_added, changes_since
from tests.integration.operator_harness import Cluster, onload_body, simulated_cluster
from tests.integration.upgrade_support import complete, wait_phase

NS = "onload"
DS = names.device_plugin_name("onload")
GATE = names.onload_label(NS, "onload")
ONLOAD_KEY = names.kmm_version_label(NS, "onload-module")
READY = names.kmm_ready_label(NS, "onload-module")
UNLOAD_WORKER = "kmm.node.kubernetes.io/worker-action"


def running_plugin_pods(cluster: Cluster, selector: str) -> set[str]:
    pods = cluster.core.list_namespaced_pod(NS, label_selector=selector).items
    return {p.spec.node_name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp}


@pytest.mark.parametrize("new_version", [None, "9.0.0"])
def test_v3_0_children_are_taken_over_and_the_daemonset_recreated_pods_first(
    tmp_path: Path, new_version: str | None
) -> None:
    with simulated_cluster(tmp_path, kmm_worker_pods=True) as cluster:
        cluster.start_operator()
        cluster.create_onload(onload_body())
        cluster.wait_ready(NS, "onload")
        cluster.stop_operator()
        leave_as_go_v3_0(cluster)
        if new_version is not None:  # edited while the operator was away, the rollout paused to watch the takeover
            cluster.patch_onload(
                NS,
                "onload",
                {
                    "spec": {
                        "onload": {"version": new_version, "userImage": f"onload-user:{new_version}"},
                        "upgrade": {"paused": True},
                    }
                },
            )
        old_selector = f"{names.NAME_LABEL}={DS},!{names.MANAGED_BY_LABEL}"
        workers = {"worker-0", "worker-1", "worker-2"}
        wait_for(lambda: running_plugin_pods(cluster, old_selector) == workers, message="v3.0 plugin pods running")
        since = cluster.core.list_namespaced_pod(NS).metadata.resource_version
        nodes_since = cluster.core.list_node().metadata.resource_version

        cluster.start_operator()
        wait_for(
            lambda: live_daemonset(cluster)["spec"]["selector"]["matchLabels"].get(names.MANAGED_BY_LABEL),
            message="the revision's DaemonSet created in place of the single one",
        )
        if new_version is None:
            cluster.wait_ready(NS, "onload", selected=3, moduleReady=3, devicePluginReady=3)
        else:
            wait_phase(cluster, "Paused", pending=3)
            wait_for(lambda: cluster.onload(NS, "onload")["status"]["nodes"]["devicePluginReady"] == 3)
        assert cluster.daemonset(NS, DS) is None

        ds = live_daemonset(cluster)
        init = ds["spec"]["template"]["spec"]["initContainers"]
        assert [c["name"] for c in init] == ["init", "install-host-files"]
        assert init[0]["image"] == "onload-user:8.1.2.26"
        assert "onload-version" not in ds["metadata"]["labels"]
        module = cluster.module(NS, "onload-module")
        assert names.MANAGED_BY_LABEL in module["metadata"]["labels"]
        assert module["spec"]["moduleLoader"]["container"]["version"] == (new_version or "8.1.2.26")
        assert module["spec"]["selector"] == {names.module_selector_label(NS, "onload"): ""}
        if new_version is not None:
            registry = module["metadata"]["annotations"][names.REVISIONS_ANNOTATION]
            assert '"8.1.2.26"' in registry
            assert f'"{new_version}"' in registry
        recreating = [e for e in cluster.events(NS, "onload") if e.reason == "Recreating"]
        assert recreating  # once, or twice when the second look came before the watch showed the deletion
        assert all(DS in e.message for e in recreating)
        # On every node the v3.0 pod was gone before the new one was created: never two plugins on one kubelet.
        assert_old_pods_deleted_before_new_ones_added(
            cluster, NS, since, workers, lambda pod: names.MANAGED_BY_LABEL in pod["metadata"].get("labels", {})
        )
        # Onload stayed loaded throughout: no node lost a label and KMM started no unload.
        nodes = changes_since(cluster.core.list_node, nodes_since)
        assert all({GATE, ONLOAD_KEY, READY} <= set(n["metadata"]["labels"]) for n in nodes)
        unloads = changes_since(
            cluster.core.list_namespaced_pod, since, namespace=NS, label_selector=f"{UNLOAD_WORKER}=unload"
        )
        assert unloads == [], "KMM started to unload during the takeover"
        if new_version is not None:
            cluster.patch_onload(NS, "onload", {"spec": {"upgrade": {"paused": False}}})
            wait_for(lambda: complete(cluster, new_version, 3), timeout=60, message="the rollout after the takeover")
