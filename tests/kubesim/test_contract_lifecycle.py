"""Finalizers, deletion propagation and garbage collection by ownerReferences."""

from typing import Any

import pytest
from kubernetes import client

from kubesim.polling import wait_for
from tests.kubesim.contract_support import WIDGET_GROUP, WIDGET_PLURAL, WIDGET_VERSION, Cluster, widget

pytestmark = pytest.mark.realcluster

MERGE = "application/merge-patch+json"


def _exists(cluster: Cluster, namespace: str, name: str) -> bool:
    return cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")[0] == 200


def _owned(name: str, owners: list[Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid}
                for o in owners
            ],
        }
    }


@pytest.mark.core_kinds
def test_finalizers_delay_deletion_until_removed(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.http("POST", path, {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    status, deleting = cluster.http("DELETE", f"{path}/f")
    assert status == 200
    assert deleting["metadata"]["deletionTimestamp"]
    assert _exists(cluster, namespace, "f")
    status, body = cluster.http(
        "PATCH", f"{path}/f", {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}}, content_type=MERGE
    )
    assert (status, body["reason"]) == (422, "Invalid")
    status, _ = cluster.http("PATCH", f"{path}/f", {"metadata": {"finalizers": None}}, content_type=MERGE)
    assert status == 200
    wait_for(lambda: not _exists(cluster, namespace, "f"), timeout=30)


@pytest.mark.core_kinds
def test_deleting_twice_keeps_the_first_deletion_timestamp(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.http("POST", path, {"metadata": {"name": "twice", "finalizers": ["example.com/hold"]}})
    _, first = cluster.http("DELETE", f"{path}/twice")
    _, second = cluster.http("DELETE", f"{path}/twice")
    assert first["metadata"]["deletionTimestamp"] == second["metadata"]["deletionTimestamp"]
    cluster.http("PATCH", f"{path}/twice", {"metadata": {"finalizers": []}}, content_type=MERGE)


@pytest.mark.core_kinds
def test_background_deletion_collects_dependents(cluster: Cluster, namespace: str) -> None:
    owner = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    cluster.core.create_namespaced_config_map(namespace, _owned("child", [owner]))
    cluster.core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    wait_for(lambda: not _exists(cluster, namespace, "child"), timeout=30)


@pytest.mark.core_kinds
def test_a_dependent_with_a_remaining_owner_survives(cluster: Cluster, namespace: str) -> None:
    first = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "o1"}})
    second = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "o2"}})
    cluster.core.create_namespaced_config_map(namespace, _owned("shared", [first, second]))
    cluster.core.create_namespaced_config_map(namespace, _owned("single", [first]))
    cluster.core.delete_namespaced_config_map("o1", namespace)
    wait_for(lambda: not _exists(cluster, namespace, "single"), timeout=30)

    def dangling_reference_dropped() -> bool:
        refs = cluster.core.read_namespaced_config_map("shared", namespace).metadata.owner_references or []
        return [r.uid for r in refs] == [second.metadata.uid]

    wait_for(dangling_reference_dropped, timeout=30)


@pytest.mark.core_kinds
def test_foreground_deletion_waits_for_dependents(cluster: Cluster, namespace: str) -> None:
    owner = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "fg"}})
    child = _owned("fg-child", [owner])
    child["metadata"]["finalizers"] = ["example.com/hold"]
    child["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    cluster.core.create_namespaced_config_map(namespace, child)
    cluster.core.delete_namespaced_config_map("fg", namespace, propagation_policy="Foreground")

    def owner_waits() -> bool:
        meta = cluster.core.read_namespaced_config_map("fg", namespace).metadata
        child_meta = cluster.core.read_namespaced_config_map("fg-child", namespace).metadata
        return bool(
            meta.deletion_timestamp and "foregroundDeletion" in meta.finalizers and child_meta.deletion_timestamp
        )

    wait_for(owner_waits, timeout=30)
    cluster.core.patch_namespaced_config_map("fg-child", namespace, {"metadata": {"finalizers": None}})
    wait_for(lambda: not _exists(cluster, namespace, "fg-child"), timeout=30)
    wait_for(lambda: not _exists(cluster, namespace, "fg"), timeout=30)


@pytest.mark.core_kinds
def test_orphan_deletion_keeps_dependents(cluster: Cluster, namespace: str) -> None:
    owner = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "orphaner"}})
    cluster.core.create_namespaced_config_map(namespace, _owned("orphan", [owner]))
    cluster.core.delete_namespaced_config_map("orphaner", namespace, propagation_policy="Orphan")
    wait_for(lambda: not _exists(cluster, namespace, "orphaner"), timeout=30)

    def orphaned() -> bool:
        return not cluster.core.read_namespaced_config_map("orphan", namespace).metadata.owner_references

    wait_for(orphaned, timeout=30)


@pytest.mark.core_kinds
def test_daemonset_deletion_collects_its_pods(cluster: Cluster, namespace: str) -> None:
    ds = cluster.apps.create_namespaced_daemon_set(
        namespace,
        {
            "metadata": {"name": "gc"},
            "spec": {
                "selector": {"matchLabels": {"app": "gc"}},
                "template": {
                    "metadata": {"labels": {"app": "gc"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]},
                },
            },
        },
    )
    pod = {
        "metadata": {
            "name": "gc-manual",
            "labels": {"other": "x"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "gc", "uid": ds.metadata.uid, "controller": True}
            ],
        },
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}], "nodeName": cluster.ready_node()},
    }
    cluster.core.create_namespaced_pod(namespace, pod)
    cluster.apps.delete_namespaced_daemon_set("gc", namespace)

    def pod_gone() -> bool:
        try:
            cluster.core.read_namespaced_pod("gc-manual", namespace)
        except client.ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(pod_gone, timeout=60)


@pytest.mark.core_kinds
def test_a_dependent_of_a_missing_owner_is_collected(cluster: Cluster, namespace: str) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "haunted", "ownerReferences": [ghost]}})
    wait_for(lambda: not _exists(cluster, namespace, "haunted"), timeout=60)


@pytest.mark.core_kinds
def test_a_cross_namespace_owner_does_not_count(cluster: Cluster, namespace: str) -> None:
    elsewhere = cluster.namespace()
    owner = cluster.core.create_namespaced_config_map(elsewhere, {"metadata": {"name": "far-owner"}})
    cluster.core.create_namespaced_config_map(namespace, _owned("far-child", [owner]))
    wait_for(lambda: not _exists(cluster, namespace, "far-child"), timeout=60)
    assert cluster.core.read_namespaced_config_map("far-owner", elsewhere).metadata.uid == owner.metadata.uid


def test_delete_answers_a_status_when_the_object_goes_at_once(cluster: Cluster, widgets: str) -> None:
    _, created = cluster.http("POST", widgets, widget("once"))
    status, body = cluster.http("DELETE", f"{widgets}/once")
    assert status == 200
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "once", "group": WIDGET_GROUP, "kind": WIDGET_PLURAL, "uid": created["metadata"]["uid"]},
    }
    # An object that finalizers hold comes back, terminating, from the first and from a repeated delete.
    cluster.http("POST", widgets, widget("held", finalizers=["example.com/hold"]))
    for _ in range(2):
        status, body = cluster.http("DELETE", f"{widgets}/held")
        assert (status, body["kind"], body["metadata"]["finalizers"]) == (200, "Widget", ["example.com/hold"])
        assert body["metadata"]["deletionTimestamp"]
    cluster.http("PATCH", f"{widgets}/held", {"metadata": {"finalizers": None}}, content_type=MERGE)
    wait_for(lambda: cluster.http("GET", f"{widgets}/held")[0] == 404, message="held widget gone")


def test_foreground_deletion_holds_the_owner_with_a_finalizer(cluster: Cluster, widgets: str) -> None:
    _, owner = cluster.http("POST", widgets, widget("owner"))
    reference = {
        "apiVersion": f"{WIDGET_GROUP}/{WIDGET_VERSION}",
        "kind": "Widget",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    cluster.http("POST", widgets, widget("dependent", ownerReferences=[reference], finalizers=["example.com/hold"]))
    status, deleting = cluster.http("DELETE", f"{widgets}/owner", {"propagationPolicy": "Foreground"})
    try:
        assert status == 200
        assert deleting["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert deleting["metadata"]["deletionTimestamp"]
        assert deleting["metadata"]["generation"] == 2
        status, waiting = cluster.http("GET", f"{widgets}/owner")
        assert (status, waiting["metadata"]["finalizers"]) == (200, ["foregroundDeletion"])
    finally:
        # Without a garbage collector (a bare API server) the owner keeps its finalizer: release both.
        for name in ("dependent", "owner"):
            cluster.http("PATCH", f"{widgets}/{name}", {"metadata": {"finalizers": None}}, content_type=MERGE)


def test_finalizer_names_are_qualified_names(cluster: Cluster, widgets: str) -> None:
    rule = (
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )
    finalizers = ["bad finalizer", "a/b/c", "example.com/ok", "kubernetes", "plain"]
    status, body = cluster.http("POST", widgets, widget("fin", finalizers=finalizers))
    assert (status, body["reason"]) == (422, "Invalid")
    assert [(c["field"], c["message"]) for c in body["details"]["causes"]] == [
        ("metadata.finalizers", f'Invalid value: "bad finalizer": name part {rule}'),
        (
            "metadata.finalizers",
            f"Invalid value: \"a/b/c\": a valid label key {rule} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')",
        ),
    ]
    status, _ = cluster.http("POST", widgets, widget("fin", finalizers=finalizers[2:]))
    assert status == 201
    status, body = cluster.http(
        "PATCH", f"{widgets}/fin", {"metadata": {"finalizers": ["Example.com/x"]}}, content_type=MERGE
    )
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["message"].startswith('Invalid value: "Example.com/x": prefix part ')
    cluster.http("PATCH", f"{widgets}/fin", {"metadata": {"finalizers": None}}, content_type=MERGE)
