"""Patches: JSON merge, JSON patch (with test), strategic merge with patch-merge keys, and server-side apply."""

import json
from typing import Any

import pytest
from kubernetes import client

from tests.kubesim.contract_support import PAUSE_IMAGE, Cluster, widget

pytestmark = pytest.mark.realcluster

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def _daemonset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"no-such-label": "true"},
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                    "volumes": [{"name": "v1", "emptyDir": {}}],
                    "containers": [
                        {
                            "name": "main",
                            "image": PAUSE_IMAGE,
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "v1", "mountPath": "/v1"}],
                        },
                        {"name": "side", "image": PAUSE_IMAGE},
                    ],
                },
            },
        },
    }


@pytest.mark.core_kinds
def test_merge_patch_merges_objects_and_deletes_nulls(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.http("POST", path, {"metadata": {"name": "m", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}})
    status, patched = cluster.http(
        "PATCH", f"{path}/m", {"metadata": {"labels": {"a": None, "c": "3"}}, "data": {"y": "2"}}, content_type=MERGE
    )
    assert status == 200
    assert patched["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert patched["data"] == {"x": "1", "y": "2"}


@pytest.mark.core_kinds
def test_json_patch_with_test_move_copy(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.http("POST", path, {"metadata": {"name": "j"}, "data": {"a": "1"}})
    operations = [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "copy", "from": "/data/a", "path": "/data/c"},
        {"op": "move", "from": "/data/b", "path": "/data/d"},
        {"op": "replace", "path": "/data/a", "value": "9"},
        {"op": "remove", "path": "/data/c"},
    ]
    status, patched = cluster.http("PATCH", f"{path}/j", operations, content_type=JSON_PATCH)
    assert status == 200
    assert patched["data"] == {"a": "9", "d": "2"}
    status, body = cluster.http(
        "PATCH", f"{path}/j", [{"op": "test", "path": "/data/a", "value": "1"}], content_type=JSON_PATCH
    )
    assert (status, body["reason"]) == (422, "Invalid")


@pytest.mark.core_kinds
def test_json_patch_test_on_resource_version_guards_concurrent_writes(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, created = cluster.http("POST", path, {"metadata": {"name": "rv"}, "data": {"a": "1"}})
    guard = {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]}
    status, _ = cluster.http(
        "PATCH", f"{path}/rv", [guard, {"op": "add", "path": "/data/b", "value": "2"}], content_type=JSON_PATCH
    )
    assert status == 200
    status, _ = cluster.http(
        "PATCH", f"{path}/rv", [guard, {"op": "add", "path": "/data/c", "value": "3"}], content_type=JSON_PATCH
    )
    assert status == 422


@pytest.mark.core_kinds
def test_strategic_merge_patch_merges_lists_by_key(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_daemon_set(namespace, _daemonset("smp"))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]},
                        {"name": "side", "$patch": "delete"},
                    ],
                    "volumes": [{"name": "v2", "emptyDir": {}}],
                    "tolerations": [{"key": "b", "operator": "Exists"}],
                }
            }
        }
    }
    status, patched = cluster.http(
        "PATCH", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/smp", patch, content_type=STRATEGIC
    )
    assert status == 200
    spec = patched["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["main"]
    main = spec["containers"][0]
    assert main["image"] == PAUSE_IMAGE
    assert {e["name"]: e["value"] for e in main["env"]} == {"A": "1", "B": "20", "C": "3"}
    assert [v["name"] for v in spec["volumes"]] == ["v1", "v2"]
    # Tolerations have no patch strategy upstream: the list is replaced.
    assert spec["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert patched["metadata"]["generation"] == 2


@pytest.mark.core_kinds
def test_strategic_merge_patch_replace_directive_and_conditions(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_daemon_set(namespace, _daemonset("rep"))
    patch = {"spec": {"template": {"spec": {"volumes": [{"name": "only", "emptyDir": {}}, {"$patch": "replace"}]}}}}
    status, patched = cluster.http(
        "PATCH", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/rep", patch, content_type=STRATEGIC
    )
    assert status == 200
    assert [v["name"] for v in patched["spec"]["template"]["spec"]["volumes"]] == ["only"]


@pytest.mark.core_kinds
def test_official_client_patch_uses_strategic_merge_for_built_ins(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_daemon_set(namespace, _daemonset("client"))
    patched = cluster.apps.patch_namespaced_daemon_set(
        "client",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}}},
    )
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"main": "registry.k8s.io/pause:3.10", "side": PAUSE_IMAGE}


@pytest.mark.core_kinds
def test_server_side_apply_creates_merges_and_removes_owned_fields(cluster: Cluster, namespace: str) -> None:
    def apply(data: dict[str, str], manager: str = "tool-a", force: bool = False) -> Any:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}
        return cluster.core.patch_namespaced_config_map(
            "ssa", namespace, body, field_manager=manager, force=force, _content_type=APPLY
        )

    created = apply({"a": "1", "b": "2"})
    assert created.data == {"a": "1", "b": "2"}
    assert "tool-a" in [m.manager for m in created.metadata.managed_fields]
    cluster.core.patch_namespaced_config_map("ssa", namespace, {"data": {"other": "x"}})
    updated = apply({"a": "1"})
    assert updated.data == {"a": "1", "other": "x"}
    with pytest.raises(client.ApiException) as raised:
        apply({"a": "changed"}, manager="tool-b")
    assert raised.value.status == 409
    forced = apply({"a": "changed"}, manager="tool-b", force=True)
    assert forced.data["a"] == "changed"


def test_server_side_apply_needs_a_field_manager(cluster: Cluster, widgets: str) -> None:
    status, answer = cluster.http("PATCH", f"{widgets}/nomanager", widget("nomanager"), content_type=APPLY)
    assert (status, answer["reason"]) == (422, "Invalid")
    assert answer["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    assert answer["details"] == {
        "group": "meta.k8s.io",
        "kind": "PatchOptions",
        "causes": [
            {
                "reason": "FieldValueRequired",
                "message": "Required value: is required for apply patch",
                "field": "fieldManager",
            }
        ],
    }


def test_server_side_apply_merges_list_map_items_of_two_managers(cluster: Cluster, widgets: str) -> None:
    assert cluster.http("PATCH", f"{widgets}/conds?fieldManager=a", widget("conds"), content_type=APPLY)[0] == 201

    def apply_conditions(manager: str, *conditions: tuple[str, str]) -> tuple[int, Any]:
        body = {**widget("conds"), "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}
        del body["spec"]
        return cluster.http("PATCH", f"{widgets}/conds/status?fieldManager={manager}", body, content_type=APPLY)

    assert apply_conditions("a", ("A", "True"))[0] == 200
    status, merged = apply_conditions("b", ("B", "False"))
    assert status == 200
    assert merged["status"]["conditions"] == [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]
    owned = {
        entry["manager"]: entry["fieldsV1"]
        for entry in merged["metadata"]["managedFields"]
        if entry.get("subresource") == "status"
    }
    assert owned == {
        manager: {"f:status": {"f:conditions": {f'k:{{"type":"{t}"}}': {".": {}, "f:status": {}, "f:type": {}}}}}
        for manager, t in (("a", "A"), ("b", "B"))
    }
    # Each manager changes and removes only its own item; another's item is a conflict unless forced.
    status, changed = apply_conditions("a", ("A", "False"))
    assert [c["status"] for c in changed["status"]["conditions"]] == ["False", "False"]
    status, conflict = apply_conditions("a", ("B", "True"))
    assert (status, conflict["reason"]) == (409, "Conflict")
    status, released = apply_conditions("b")
    assert status == 200
    assert released["status"]["conditions"] == [{"type": "A", "status": "False"}]


@pytest.mark.core_kinds
def test_server_side_apply_of_yaml_and_list_items(cluster: Cluster, namespace: str) -> None:
    yaml_body = f"""
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: applied
spec:
  selector:
    matchLabels: {{app: applied}}
  template:
    metadata:
      labels: {{app: applied}}
    spec:
      nodeSelector: {{no-such-label: "true"}}
      containers:
      - name: main
        image: {PAUSE_IMAGE}
"""
    url = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/applied?fieldManager=yaml-tool"
    status, created = cluster.http("PATCH", url, yaml_body, content_type=APPLY)
    assert status == 201
    assert created["spec"]["template"]["spec"]["containers"][0]["name"] == "main"
    status, again = cluster.http("PATCH", url, yaml_body.replace("name: main", "name: renamed"), content_type=APPLY)
    assert status == 200, again
    assert [c["name"] for c in again["spec"]["template"]["spec"]["containers"]] == ["renamed"]


@pytest.mark.core_kinds
def test_unsupported_patch_content_type(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.http("POST", path, {"metadata": {"name": "ct"}})
    status, body = cluster.http("PATCH", f"{path}/ct", {"data": {}}, content_type="text/plain")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


@pytest.mark.core_kinds
def test_ordinary_writes_record_update_managers_that_apply_conflicts_with(cluster: Cluster, namespace: str) -> None:
    created = cluster.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "owned"}, "data": {"a": "1", "b": "2"}}, field_manager="creator"
    )
    entries = [(m.manager, m.operation) for m in created.metadata.managed_fields]
    assert ("creator", "Update") in entries
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": "changed"}}
    with pytest.raises(client.ApiException) as raised:
        cluster.core.patch_namespaced_config_map(
            "owned", namespace, applied, field_manager="applier", _content_type=APPLY
        )
    assert raised.value.status == 409
    assert "creator" in json.loads(raised.value.body or "{}")["message"]
    same = {**applied, "data": {"b": "2"}}
    shared = cluster.core.patch_namespaced_config_map(
        "owned", namespace, same, field_manager="applier", _content_type=APPLY
    )
    assert shared.data == {"a": "1", "b": "2"}
    forced = cluster.core.patch_namespaced_config_map(
        "owned", namespace, applied, field_manager="applier", force=True, _content_type=APPLY
    )
    assert forced.data["a"] == "changed"
    managers = {m.manager: m for m in forced.metadata.managed_fields}
    assert "f:a" in managers["applier"].fields_v1["f:data"]
    assert "f:a" not in managers["creator"].fields_v1["f:data"]


@pytest.mark.core_kinds
def test_a_patch_takes_over_the_fields_it_changes(cluster: Cluster, namespace: str) -> None:
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "drift"}, "data": {"a": "1"}}
    cluster.core.patch_namespaced_config_map("drift", namespace, applied, field_manager="operator", _content_type=APPLY)
    cluster.core.patch_namespaced_config_map("drift", namespace, {"data": {"a": "edited"}}, field_manager="editor")
    again = cluster.core.patch_namespaced_config_map(
        "drift", namespace, {**applied, "data": {}}, field_manager="operator", _content_type=APPLY
    )
    # The operator no longer owns "a" (the editor does), so dropping it from the apply leaves it alone.
    assert again.data == {"a": "edited"}


@pytest.mark.core_kinds
def test_repeating_an_apply_changes_nothing(cluster: Cluster, namespace: str) -> None:
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "same"}, "data": {"a": "1"}}
    first = cluster.core.patch_namespaced_config_map("same", namespace, applied, field_manager="m", _content_type=APPLY)
    second = cluster.core.patch_namespaced_config_map(
        "same", namespace, applied, field_manager="m", _content_type=APPLY
    )
    assert second.metadata.resource_version == first.metadata.resource_version


def test_merge_and_json_patches_of_custom_resources(cluster: Cluster, widgets: str) -> None:
    cluster.http("POST", widgets, widget("p", {"size": 2, "extra": {"a": 1, "b": {"c": 2}}}, labels={"x": "1"}))
    status, merged = cluster.http(
        "PATCH",
        f"{widgets}/p",
        {"metadata": {"labels": {"x": None, "y": "2"}}, "spec": {"extra": {"a": None, "b": {"d": 3}}}},
        content_type=MERGE,
    )
    assert status == 200
    assert merged["metadata"]["labels"] == {"y": "2"}
    assert merged["spec"]["extra"] == {"b": {"c": 2, "d": 3}}
    assert merged["metadata"]["generation"] == 2
    version = merged["metadata"]["resourceVersion"]
    operations = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/spec/size", "value": 3},
        {"op": "add", "path": "/spec/ports", "value": [{"port": 80}]},
    ]
    status, patched = cluster.http("PATCH", f"{widgets}/p", operations, content_type=JSON_PATCH)
    assert status == 200
    assert (patched["spec"]["size"], patched["spec"]["ports"]) == (3, [{"port": 80, "protocol": "TCP"}])
    status, failed = cluster.http("PATCH", f"{widgets}/p", operations, content_type=JSON_PATCH)
    assert (status, failed["reason"]) == (422, "Invalid")  # the test operation fails: the version has changed
    status, invalid = cluster.http(
        "PATCH", f"{widgets}/p", [{"op": "replace", "path": "/spec/size", "value": 99}], content_type=JSON_PATCH
    )
    assert (status, invalid["reason"]) == (422, "Invalid")
