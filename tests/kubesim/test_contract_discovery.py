"""Discovery documents, errors as Status objects, and served resources following CRDs."""

from typing import Any

import pytest

from kubesim.polling import wait_for
from tests.kubesim.contract_support import WIDGET_CRD, WIDGET_GROUP, WIDGET_VERSION, Cluster

pytestmark = pytest.mark.realcluster


def _resource(resource_list: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in resource_list["resources"] if r["name"] == name)


@pytest.mark.core_kinds
def test_version_and_core_group(cluster: Cluster) -> None:
    status, version = cluster.http("GET", "/version")
    assert status == 200
    assert version["major"] == "1"
    assert version["gitVersion"].startswith("v1.")
    status, api = cluster.http("GET", "/api")
    assert (status, api["kind"], api["versions"]) == (200, "APIVersions", ["v1"])


@pytest.mark.core_kinds
def test_core_v1_resources_have_kinds_verbs_scopes_and_subresources(cluster: Cluster) -> None:
    status, core = cluster.http("GET", "/api/v1")
    assert status == 200
    assert core["kind"] == "APIResourceList"
    assert core["groupVersion"] == "v1"
    pods = _resource(core, "pods")
    assert pods["kind"] == "Pod"
    assert pods["namespaced"] is True
    assert "po" in pods["shortNames"]
    assert set(pods["verbs"]) >= {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
    nodes = _resource(core, "nodes")
    assert nodes["namespaced"] is False
    eviction = _resource(core, "pods/eviction")
    assert (eviction["group"], eviction["version"], eviction["kind"], eviction["verbs"]) == (
        "policy",
        "v1",
        "Eviction",
        ["create"],
    )
    assert set(_resource(core, "pods/status")["verbs"]) == {"get", "patch", "update"}
    for name in ("namespaces", "configmaps", "secrets", "services", "serviceaccounts", "events"):
        assert _resource(core, name)["kind"]


@pytest.mark.core_kinds
@pytest.mark.parametrize(
    ("group_version", "plural", "kind", "namespaced"),
    [
        ("apps/v1", "daemonsets", "DaemonSet", True),
        ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
        ("coordination.k8s.io/v1", "leases", "Lease", True),
        ("events.k8s.io/v1", "events", "Event", True),
        ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    ],
)
def test_group_resources(cluster: Cluster, group_version: str, plural: str, kind: str, namespaced: bool) -> None:
    status, groups = cluster.http("GET", "/apis")
    assert status == 200
    assert groups["kind"] == "APIGroupList"
    group = group_version.split("/")[0]
    listed = next(g for g in groups["groups"] if g["name"] == group)
    assert group_version in [v["groupVersion"] for v in listed["versions"]]
    status, document = cluster.http("GET", f"/apis/{group}")
    assert (status, document["kind"], document["name"]) == (200, "APIGroup", group)
    status, resources = cluster.http("GET", f"/apis/{group_version}")
    assert status == 200
    entry = _resource(resources, plural)
    assert (entry["kind"], entry["namespaced"]) == (kind, namespaced)
    if plural in ("daemonsets", "poddisruptionbudgets"):
        assert _resource(resources, f"{plural}/status")["kind"] == kind


def test_served_resources_follow_crd_creation_and_deletion(cluster: Cluster) -> None:
    assert cluster.http("GET", f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}")[0] == 404
    cluster.widget_crd()
    _, resources = cluster.http("GET", f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}")
    widgets = _resource(resources, "widgets")
    assert (widgets["kind"], widgets["namespaced"], widgets["singularName"]) == ("Widget", True, "widget")
    assert _resource(resources, "widgets/status")["kind"] == "Widget"

    def group_listed() -> bool:
        _, groups = cluster.http("GET", "/apis")
        return WIDGET_GROUP in [g["name"] for g in groups["groups"]]

    # A bare apiextensions-apiserver serves no /apis group list (an aggregator would); kubesim and clusters do.
    serves_group_list = cluster.http("GET", "/apis")[0] == 200
    if serves_group_list:
        wait_for(group_listed, timeout=30, message="the Widget group in /apis")
    crd = cluster.extensions.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"

    cluster.extensions.delete_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
    wait_for(lambda: cluster.http("GET", f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}")[0] == 404, timeout=30)
    if serves_group_list:
        assert not group_listed()


@pytest.mark.core_kinds
def test_errors_are_status_objects(cluster: Cluster, namespace: str) -> None:
    status, body = cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/missing")
    assert status == 404
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["reason"] == "NotFound"
    assert body["code"] == 404
    assert body["details"] == {"name": "missing", "kind": "configmaps"}
    assert body["message"] == 'configmaps "missing" not found'
    status, body = cluster.http("GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/missing")
    assert body["message"] == 'daemonsets.apps "missing" not found'
    assert body["details"]["group"] == "apps"
    status, body = cluster.http("GET", "/api/v1/nosuchresources")
    assert (status, body["reason"]) == (404, "NotFound")
