"""The operator's API calls during a whole lifecycle are exactly the permissions of onload_operator.rbac_rules."""

from __future__ import annotations

from kubesim.polling import wait_for
from onload_operator.rbac_rules import permissions
from onload_operator.render import names
from tests.integration.go_operator import leave_as_go_v3_0, live_daemonset
from tests.integration.operator_harness import Cluster, Request, onload_body
from tests.integration.upgrade_support import APPS, budget, complete, upgrade_spec, workload

NS = "onload"


def permissions_of(request: Request) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) that a REST request needs; none for discovery documents.

    A server-side apply that creates the object is authorized as ``create`` too, as Kubernetes does. An apply of
    a child also needs ``update`` on ``onloads/finalizers``: the children's owner references set
    ``blockOwnerDeletion``, which the OwnerReferencesPermissionEnforcement admission plugin (on by default in
    OpenShift) allows only to those who may set finalizers on the owner.
    """
    parts = request.path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if not rest:
        return set()
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    watch = request.query.get("watch") in {"true", "1"}
    verb = {
        "GET": "watch" if watch else "get" if name else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }[request.method]
    resource = f"{resource}/{sub}" if sub else resource
    needed = {(group, resource, verb)}
    if request.content_type == "application/apply-patch+yaml":
        needed.add(("onload.amd.com", "onloads/finalizers", "update"))
        if request.status == 201:
            needed.add((group, resource, "create"))
    return needed


def upgrade_with_a_forced_eviction_then_without_sfc(cluster: Cluster) -> None:
    """Evictions (one refused by a budget, then forced) and the sfc Module deleted once no node uses sfc."""
    cluster.core.create_namespace({"metadata": {"name": APPS}})
    workload(cluster, "worker-0", "trader-0", app="pinned")
    budget(cluster, "pinned", "pinned", min_available=1)
    mappings = cluster.onload(NS, "onload")["spec"]["onload"]["kernelMappings"]
    with_sfc = [{**mappings[0], "sfc": {}}]
    spec = upgrade_spec("9.0.0")["spec"]
    spec["onload"]["kernelMappings"] = with_sfc
    spec["upgrade"] = {"evictionTimeoutSeconds": 1, "onEvictionTimeout": "Force"}
    cluster.patch_onload(NS, "onload", {"spec": spec})
    wait_for(lambda: complete(cluster, "9.0.0", 3), timeout=60, message="the rollout to 9.0.0 with sfc")
    assert cluster.module(NS, "onload-sfcmod") is not None
    spec = upgrade_spec("9.0.1")["spec"]
    spec["onload"]["kernelMappings"] = mappings
    cluster.patch_onload(NS, "onload", {"spec": spec})
    wait_for(lambda: complete(cluster, "9.0.1", 3), timeout=60, message="the rollout to 9.0.1 without sfc")
    wait_for(lambda: cluster.module(NS, "onload-sfcmod") is None, message="the sfc Module deleted")


def test_operator_calls_match_the_rbac_rules(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    cluster.patch_onload(NS, "onload", {"spec": {"devicePlugin": {"maxPodsPerNode": 9}}})
    cluster.apps.delete_namespaced_daemon_set(names.device_plugin_revision_name("onload", "8.1.2.26"), NS)
    wait_for(lambda: cluster.daemonset(NS, names.device_plugin_revision_name("onload", "8.1.2.26")) is not None)
    cluster.wait_ready(NS, "onload")
    cluster.stop_operator()
    leave_as_go_v3_0(cluster)  # its DaemonSet is deleted and created again
    cluster.start_operator()
    wait_for(
        lambda: names.MANAGED_BY_LABEL in live_daemonset(cluster)["spec"]["selector"]["matchLabels"],
        message="the DaemonSet created again",
    )
    cluster.wait_ready(NS, "onload")
    upgrade_with_a_forced_eviction_then_without_sfc(cluster)
    cluster.label_node("worker-2", {"node-role.kubernetes.io/worker": None})  # a node leaves
    module_key = names.kmm_version_label(NS, "onload-module")
    wait_for(lambda: module_key not in cluster.node_labels()["worker-2"], message="worker-2 cleaned up")
    cluster.delete_onload(NS, "onload")
    wait_for(lambda: not cluster.onload_exists(NS, "onload"))
    calls = [r for r in cluster.requests if r.by_operator and r.path.startswith(("/api/", "/apis/"))]
    used = set().union(*(permissions_of(r) for r in calls))
    assert used == permissions()
