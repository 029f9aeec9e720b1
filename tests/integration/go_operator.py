"""What the Go operator's first release (v3.0) leaves in a cluster, for takeover tests."""

from __future__ import annotations

import copy
import json
from typing import Any

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import Cluster

NS = "onload"
DS = names.device_plugin_name("onload")
"""The Go operator's single device-plugin DaemonSet."""
REVISION_DS = names.device_plugin_revision_name("onload", "8.1.2.26")
V3_0_INIT = "onload-onload-device-plugin-init"
WORKER = "node-role.kubernetes.io/worker"


def live_daemonset(cluster: Cluster, name: str = REVISION_DS) -> dict[str, Any]:
    response = cluster.apps.read_namespaced_daemon_set(name, NS, _preload_content=False)
    body: dict[str, Any] = json.loads(response.read())
    return body


def v3_0_daemonset(current: dict[str, Any]) -> dict[str, Any]:
    """The DaemonSet as the Go operator v3.0 made it: no recommended labels, selected by name only."""
    template = copy.deepcopy(current["spec"]["template"])
    template["metadata"] = {"labels": {names.NAME_LABEL: DS}}
    template["spec"]["initContainers"][0]["name"] = V3_0_INIT
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": DS,
            "namespace": NS,
            "labels": {"onload-version": "8.1.2.26"},
            "ownerReferences": current["metadata"]["ownerReferences"],
        },
        "spec": {
            "selector": {"matchLabels": {names.NAME_LABEL: DS}},
            "updateStrategy": {"type": "OnDelete"},
            "template": template,
        },
    }


def leave_as_go_v3_0(cluster: Cluster) -> None:
    """Turn the children of Onload onload/onload, made by this operator (stopped), into those of the Go v3.0
    operator: Modules without labels or annotations that select the CR's ``spec.selector``, nodes without the
    Module selector label, and a DaemonSet selecting its pods by name alone."""
    selector_key = names.module_selector_label(NS, "onload")
    for module in ("onload-module", "onload-sfcmod"):
        if cluster.module(NS, module) is not None:
            patch = {
                "metadata": {"labels": None, "annotations": None},
                "spec": {"selector": {WORKER: "", selector_key: None}},
            }
            cluster.patch_module(NS, module, patch, manager="manager")
    for node in cluster.node_labels():
        cluster.label_node(node, {selector_key: None})
    old = v3_0_daemonset(live_daemonset(cluster))
    del old["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"]
    old["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["operator"] = "Exists"
    cluster.apps.delete_namespaced_daemon_set(REVISION_DS, NS, propagation_policy="Foreground")
    wait_for(lambda: cluster.daemonset(NS, REVISION_DS) is None, message="the operator's DaemonSet gone")
    cluster.apps.create_namespaced_daemon_set(NS, old)
