"""Object metadata and the basic verbs: create, get, list (selectors, paging), update, delete, deletecollection."""

import pytest
from kubernetes import client

from kubesim.polling import wait_for
from tests.kubesim.contract_support import Cluster

pytestmark = pytest.mark.realcluster


def _configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


@pytest.mark.core_kinds
def test_create_sets_metadata_and_namespace_from_the_url(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(namespace, _configmap("a", k="v"))
    meta = created.metadata
    assert meta.namespace == namespace
    assert meta.uid
    assert meta.creation_timestamp is not None
    assert int(meta.resource_version) > 0
    fetched = cluster.core.read_namespaced_config_map("a", namespace)
    assert fetched.metadata.uid == meta.uid
    assert fetched.data == {"k": "v"}


@pytest.mark.core_kinds
def test_resource_versions_increase_across_resources(cluster: Cluster, namespace: str) -> None:
    first = cluster.core.create_namespaced_config_map(namespace, _configmap("one"))
    second = cluster.core.create_namespaced_secret(namespace, {"metadata": {"name": "two"}, "stringData": {"a": "b"}})
    third = cluster.core.patch_namespaced_config_map("one", namespace, {"data": {"x": "y"}})
    versions = [int(o.metadata.resource_version) for o in (first, second, third)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    assert second.data == {"a": "Yg=="}


@pytest.mark.core_kinds
def test_generate_name(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}})
    assert created.metadata.name.startswith("gen-")
    assert len(created.metadata.name) == len("gen-") + 5


@pytest.mark.core_kinds
def test_create_conflict_is_already_exists(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_config_map(namespace, _configmap("dup"))
    with pytest.raises(client.ApiException) as raised:
        cluster.core.create_namespaced_config_map(namespace, _configmap("dup"))
    assert raised.value.status == 409
    assert raised.value.reason == "Conflict"
    status, body = cluster.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", _configmap("dup"))
    assert (status, body["reason"]) == (409, "AlreadyExists")


@pytest.mark.core_kinds
def test_create_in_a_missing_namespace_is_not_found(cluster: Cluster) -> None:
    status, body = cluster.http("POST", "/api/v1/namespaces/no-such-namespace/configmaps", _configmap("x"))
    assert (status, body["reason"]) == (404, "NotFound")


@pytest.mark.core_kinds
def test_namespace_mismatch_is_bad_request(cluster: Cluster, namespace: str) -> None:
    body = {"metadata": {"name": "x", "namespace": "elsewhere"}}
    status, answer = cluster.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert (status, answer["reason"]) == (400, "BadRequest")


@pytest.mark.core_kinds
def test_update_with_stale_resource_version_conflicts(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(namespace, _configmap("u", k="1"))
    created.data = {"k": "2"}
    updated = cluster.core.replace_namespaced_config_map("u", namespace, created)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    created.data = {"k": "3"}
    with pytest.raises(client.ApiException) as raised:
        cluster.core.replace_namespaced_config_map("u", namespace, created)
    assert raised.value.status == 409
    status, body = cluster.http(
        "PUT",
        f"/api/v1/namespaces/{namespace}/configmaps/u",
        {"metadata": {"name": "u", "resourceVersion": created.metadata.resource_version}, "data": {"k": "4"}},
    )
    assert (status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]


@pytest.mark.core_kinds
def test_noop_update_keeps_the_resource_version(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(namespace, _configmap("same", k="1"))
    again = cluster.core.replace_namespaced_config_map("same", namespace, created)
    assert again.metadata.resource_version == created.metadata.resource_version


@pytest.mark.core_kinds
def test_list_with_label_selectors(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_config_map(namespace, _configmap("a", {"tier": "web", "env": "prod"}))
    cluster.core.create_namespaced_config_map(namespace, _configmap("b", {"tier": "db", "env": "prod"}))
    cluster.core.create_namespaced_config_map(namespace, _configmap("c", {"tier": "web"}))

    def names(selector: str) -> list[str]:
        items = cluster.core.list_namespaced_config_map(namespace, label_selector=selector).items
        return sorted(i.metadata.name for i in items if i.metadata.name in ("a", "b", "c"))

    assert names("tier=web") == ["a", "c"]
    assert names("tier==web") == ["a", "c"]
    assert names("tier!=web") == ["b"]
    assert names("tier in (web,db),env") == ["a", "b"]
    assert names("tier notin (web)") == ["b"]
    assert names("!env") == ["c"]
    assert names("env,tier=web") == ["a"]
    status, body = cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps?labelSelector=a%20b%20c")
    assert (status, body["reason"]) == (400, "BadRequest")


@pytest.mark.core_kinds
def test_list_with_field_selectors(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_config_map(namespace, _configmap("x1"))
    cluster.core.create_namespaced_config_map(namespace, _configmap("x2"))
    by_name = cluster.core.list_namespaced_config_map(namespace, field_selector="metadata.name=x1").items
    assert [i.metadata.name for i in by_name] == ["x1"]
    not_name = cluster.core.list_namespaced_config_map(namespace, field_selector="metadata.name!=x1").items
    assert "x1" not in [i.metadata.name for i in not_name]
    everywhere = cluster.core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={namespace},metadata.name=x2"
    ).items
    assert [(i.metadata.namespace, i.metadata.name) for i in everywhere] == [(namespace, "x2")]


@pytest.mark.core_kinds
def test_pod_field_selectors_on_node_and_phase(cluster: Cluster, namespace: str) -> None:
    node = cluster.ready_node()
    pod = {
        "metadata": {"name": "p"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]},
    }
    cluster.core.create_namespaced_pod(namespace, pod)
    on_node = cluster.core.list_namespaced_pod(namespace, field_selector=f"spec.nodeName={node}").items
    assert [p.metadata.name for p in on_node] == ["p"]
    elsewhere = cluster.core.list_namespaced_pod(namespace, field_selector="spec.nodeName=no-such-node").items
    assert elsewhere == []
    not_failed = cluster.core.list_namespaced_pod(
        namespace, field_selector="status.phase!=Failed,status.phase!=Succeeded"
    ).items
    assert [p.metadata.name for p in not_failed] == ["p"]


@pytest.mark.core_kinds
def test_list_pages_with_limit_and_continue(cluster: Cluster, namespace: str) -> None:
    for index in range(7):
        cluster.core.create_namespaced_config_map(namespace, _configmap(f"page-{index}"))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = cluster.core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        pages += 1
        seen.extend(i.metadata.name for i in page.items if i.metadata.name.startswith("page-"))
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count is None or page.metadata.remaining_item_count > 0
    assert seen == [f"page-{i}" for i in range(7)]
    assert pages >= 3


@pytest.mark.core_kinds
def test_list_reports_a_resource_version(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(namespace, _configmap("rv"))
    listed = cluster.core.list_namespaced_config_map(namespace)
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    assert listed.kind == "ConfigMapList"


@pytest.mark.core_kinds
def test_delete_and_deletecollection(cluster: Cluster, namespace: str) -> None:
    for name, tier in (("d1", "a"), ("d2", "a"), ("d3", "b")):
        cluster.core.create_namespaced_config_map(namespace, _configmap(name, {"tier": tier}))
    cluster.core.delete_namespaced_config_map("d3", namespace)
    with pytest.raises(client.ApiException) as raised:
        cluster.core.read_namespaced_config_map("d3", namespace)
    assert raised.value.status == 404
    with pytest.raises(client.ApiException) as raised:
        cluster.core.delete_namespaced_config_map("d3", namespace)
    assert raised.value.status == 404
    cluster.core.delete_collection_namespaced_config_map(namespace, label_selector="tier=a")
    left = [i.metadata.name for i in cluster.core.list_namespaced_config_map(namespace).items]
    assert "d1" not in left
    assert "d2" not in left


@pytest.mark.core_kinds
def test_delete_preconditions(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(namespace, _configmap("pre"))
    status, body = cluster.http(
        "DELETE",
        f"/api/v1/namespaces/{namespace}/configmaps/pre",
        {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}},
    )
    assert (status, body["reason"]) == (409, "Conflict")
    status, _ = cluster.http(
        "DELETE",
        f"/api/v1/namespaces/{namespace}/configmaps/pre",
        {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": created.metadata.uid}},
    )
    assert status == 200


@pytest.mark.core_kinds
def test_dry_run_changes_nothing(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(namespace, _configmap("dry"), dry_run="All")
    assert created.metadata.name == "dry"
    with pytest.raises(client.ApiException):
        cluster.core.read_namespaced_config_map("dry", namespace)
    real = cluster.core.create_namespaced_config_map(namespace, _configmap("dry"))
    cluster.core.delete_namespaced_config_map("dry", namespace, dry_run="All")
    assert cluster.core.read_namespaced_config_map("dry", namespace).metadata.uid == real.metadata.uid


@pytest.mark.core_kinds
def test_cluster_scoped_and_namespace_lifecycle(cluster: Cluster) -> None:
    name = cluster.namespace()
    namespace = cluster.core.read_namespace(name)
    assert namespace.status.phase == "Active"
    assert namespace.metadata.labels["kubernetes.io/metadata.name"] == name
    cluster.core.create_namespaced_config_map(name, _configmap("inside"))
    cluster.core.delete_namespace(name)
    cluster.namespaces.remove(name)

    def namespace_gone() -> bool:
        try:
            cluster.core.read_namespace(name)
        except client.ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(namespace_gone, timeout=60)
    status, _ = cluster.http("GET", f"/api/v1/namespaces/{name}/configmaps/inside")
    assert status == 404


@pytest.mark.core_kinds
def test_unsupported_field_labels_are_rejected(cluster: Cluster, namespace: str) -> None:
    status, body = cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps?fieldSelector=data.a%3D1")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert "data.a" in body["message"]
    status, _ = cluster.http("GET", f"/api/v1/namespaces/{namespace}/pods?fieldSelector=spec.schedulerName%3Dx")
    assert status == 200
    status, _ = cluster.http("GET", f"/api/v1/namespaces/{namespace}/events?fieldSelector=involvedObject.name%3Dx")
    assert status == 200
    status, _ = cluster.http("GET", f"/api/v1/namespaces/{namespace}/pods?fieldSelector=spec.containers%3Dx")
    assert status == 400


@pytest.mark.core_kinds
def test_crd_selectable_fields(cluster: Cluster, namespace: str) -> None:
    group = "selectable.kubesim.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"colors.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Color", "plural": "colors"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "selectableFields": [{"jsonPath": ".spec.hue"}],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"hue": {"type": "string"}, "shade": {"type": "string"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.extensions.create_custom_resource_definition(crd)
    base = f"/apis/{group}/v1/namespaces/{namespace}/colors"
    wait_for(lambda: cluster.http("GET", base)[0] == 200, timeout=30)
    for name, hue in (("r", "red"), ("b", "blue")):
        body = {"apiVersion": f"{group}/v1", "kind": "Color", "metadata": {"name": name}, "spec": {"hue": hue}}
        assert cluster.http("POST", base, body)[0] == 201
    status, listed = cluster.http("GET", f"{base}?fieldSelector=spec.hue%3Dred")
    assert status == 200
    assert [i["metadata"]["name"] for i in listed["items"]] == ["r"]
    assert cluster.http("GET", f"{base}?fieldSelector=spec.shade%3Ddark")[0] == 400
    cluster.extensions.delete_custom_resource_definition(f"colors.{group}")


@pytest.mark.core_kinds
def test_immutable_fields(cluster: Cluster, namespace: str) -> None:
    daemonset = {
        "metadata": {"name": "fixed"},
        "spec": {
            "selector": {"matchLabels": {"app": "fixed"}},
            "template": {
                "metadata": {"labels": {"app": "fixed", "extra": "x"}},
                "spec": {
                    "nodeSelector": {"none": "x"},
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}],
                },
            },
        },
    }
    cluster.apps.create_namespaced_daemon_set(namespace, daemonset)
    status, body = cluster.http(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets/fixed",
        {"spec": {"selector": {"matchLabels": {"extra": "x"}}}},
        content_type="application/merge-patch+json",
    )
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.selector"
    assert "field is immutable" in body["message"]

    cluster.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": True}
    )
    status, body = cluster.http(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/frozen",
        {"data": {"a": "2"}},
        content_type="application/merge-patch+json",
    )
    assert (status, body["reason"]) == (422, "Invalid")
    status, _ = cluster.http(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/frozen",
        {"metadata": {"labels": {"ok": "yes"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200


@pytest.mark.core_kinds
def test_service_keeps_its_cluster_ip(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_service(
        namespace, {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}
    )
    ip = created.spec.cluster_ip
    assert ip
    assert created.spec.ports[0].target_port == 80
    replaced = cluster.core.replace_namespaced_service(
        "svc",
        namespace,
        {
            "metadata": {"name": "svc", "resourceVersion": created.metadata.resource_version},
            "spec": {"selector": {"app": "y"}, "ports": [{"port": 80}]},
        },
    )
    assert replaced.spec.cluster_ip == ip
    assert replaced.spec.ports[0].target_port == 80
    status, body = cluster.http(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/services/svc",
        {"spec": {"clusterIP": "10.96.200.200"}},
        content_type="application/merge-patch+json",
    )
    assert (status, body["reason"]) == (422, "Invalid")


@pytest.mark.core_kinds
@pytest.mark.parametrize(
    ("labels", "annotations"),
    [
        ({"app": "has space"}, {}),
        ({"app": "x" * 64}, {}),
        ({"Bad_Prefix.com/app": "x"}, {}),
        ({"app": "-leading"}, {}),
        ({}, {"bad key!": "x"}),
    ],
)
def test_label_and_annotation_syntax_is_checked(
    cluster: Cluster, namespace: str, labels: dict[str, str], annotations: dict[str, str]
) -> None:
    body = {"metadata": {"name": "labelled", "labels": labels, "annotations": annotations}}
    status, answer = cluster.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert (status, answer["reason"]) == (422, "Invalid")
    assert answer["details"]["causes"][0]["field"] in ("metadata.labels", "metadata.annotations")


@pytest.mark.core_kinds
def test_valid_labels_are_accepted(cluster: Cluster, namespace: str) -> None:
    labels = {"kmm.node.kubernetes.io/version-module.onload.onload": "8.1.2.26", "empty": "", "a_b-c.d": "x" * 63}
    status, _ = cluster.http(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "ok", "labels": labels}}
    )
    assert status == 201
