"""The store through the ObjectStore protocol the simulated controllers use."""

import json
from typing import Any

import pytest

from kubesim.errors import ApiError
from kubesim.objectstore import ObjectStore, WatchEvent
from kubesim.store import CRD_RESOURCE, Store

CONFIGMAPS = "v1/configmaps"
PODS = "v1/pods"

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.store.test"},
    "spec": {
        "group": "store.test",
        "scope": "Cluster",
        "names": {"kind": "Thing", "plural": "things"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            },
            {
                "name": "v2",
                "served": True,
                "storage": False,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            },
        ],
    },
}


@pytest.fixture
def store() -> Store:
    created = Store()
    for name in ("default", "other"):
        created.create("v1/namespaces", {"metadata": {"name": name}})
    return created


def _cm(name: str, namespace: str = "default", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, **extra}, "data": {"a": "1"}}


def test_store_satisfies_the_protocol(store: Store) -> None:
    protocol: ObjectStore = store
    assert protocol.get(CONFIGMAPS, "default", "missing") is None


def test_reads_are_copies(store: Store) -> None:
    created = store.create(CONFIGMAPS, _cm("c"))
    created["data"]["a"] = "mutated"
    fetched = store.get(CONFIGMAPS, "default", "c")
    assert fetched is not None
    assert fetched["data"] == {"a": "1"}
    fetched["data"]["a"] = "mutated"
    listed = store.list(CONFIGMAPS, "default")
    assert listed[0]["data"] == {"a": "1"}


def test_stored_versions_are_never_mutated(store: Store) -> None:
    """Every write builds a new object: the history keeps exact snapshots."""
    store.create(CONFIGMAPS, _cm("imm", labels={"x": "1"}, finalizers=["a/b"]))
    resource_type = store.resolve(CONFIGMAPS)
    snapshots = []

    def snapshot(kind: str, obj: dict[str, Any]) -> None:
        snapshots.append((obj, json.dumps(obj, sort_keys=True)))

    store.listen(resource_type, snapshot)
    store.merge_patch(CONFIGMAPS, "default", "imm", {"data": {"b": "2"}, "metadata": {"labels": {"x": None}}})
    store.patch_raw(
        resource_type, "default", "imm", "application/json-patch+json", [{"op": "remove", "path": "/data/a"}]
    )
    store.patch_raw(resource_type, "default", "imm", "application/strategic-merge-patch+json", {"data": {"c": "3"}})
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "imm"}, "data": {"d": "4"}}
    store.patch_raw(resource_type, "default", "imm", "application/apply-patch+yaml", applied, field_manager="m")
    store.patch_raw(
        resource_type, "default", "imm", "application/apply-patch+yaml", {**applied, "data": {}}, field_manager="m"
    )
    store.delete(CONFIGMAPS, "default", "imm")
    store.merge_patch(CONFIGMAPS, "default", "imm", {"metadata": {"finalizers": None}})
    assert len(snapshots) == 7
    for obj, text in snapshots:
        assert json.dumps(obj, sort_keys=True) == text


def test_subscribers_see_changes_in_commit_order_even_when_writing(store: Store) -> None:
    seen: list[tuple[str, str, str]] = []

    def cascade(event: WatchEvent) -> None:
        meta = event["object"]["metadata"]
        seen.append((event["type"], meta["name"], meta["resourceVersion"]))
        if event["type"] == "ADDED" and meta["name"] == "first":
            store.create(CONFIGMAPS, _cm("second"))

    late: list[str] = []
    store.subscribe(CONFIGMAPS, cascade)
    unsubscribe = store.subscribe(CONFIGMAPS, lambda e: late.append(e["object"]["metadata"]["name"]))
    store.create(CONFIGMAPS, _cm("first"))
    assert [name for _, name, _ in seen] == ["first", "second"]
    assert late == ["first", "second"]
    versions = [int(rv) for _, _, rv in seen]
    assert versions == sorted(versions)
    unsubscribe()
    store.create(CONFIGMAPS, _cm("third"))
    assert late == ["first", "second"]


def test_subscriber_events_are_copies(store: Store) -> None:
    events: list[WatchEvent] = []
    store.subscribe(CONFIGMAPS, events.append)
    store.create(CONFIGMAPS, _cm("c"))
    events[0]["object"]["data"]["a"] = "changed"
    fetched = store.get(CONFIGMAPS, "default", "c")
    assert fetched is not None
    assert fetched["data"]["a"] == "1"


def test_update_conflicts_on_stale_resource_version(store: Store) -> None:
    created = store.create(CONFIGMAPS, _cm("u"))
    store.update(CONFIGMAPS, {**created, "data": {"a": "2"}})
    with pytest.raises(ApiError) as raised:
        store.update(CONFIGMAPS, {**created, "data": {"a": "3"}})
    assert (raised.value.code, raised.value.reason) == (409, "Conflict")
    unconditional = {**created, "metadata": {**created["metadata"], "resourceVersion": ""}, "data": {"a": "4"}}
    assert store.update(CONFIGMAPS, unconditional)["data"] == {"a": "4"}


def test_errors(store: Store) -> None:
    with pytest.raises(ApiError) as raised:
        store.create(CONFIGMAPS, _cm("x", namespace="missing"))
    assert raised.value.code == 404
    store.create(CONFIGMAPS, _cm("x"))
    with pytest.raises(ApiError) as raised:
        store.create(CONFIGMAPS, _cm("x"))
    assert (raised.value.code, raised.value.reason) == (409, "AlreadyExists")
    with pytest.raises(ApiError) as raised:
        store.merge_patch(CONFIGMAPS, "default", "nope", {})
    assert raised.value.to_status()["reason"] == "NotFound"
    with pytest.raises(ApiError) as raised:
        store.create(CONFIGMAPS, _cm("Bad_Name"))
    assert raised.value.code == 422
    with pytest.raises(ApiError):
        store.resolve("v9/nothing")


def test_generation_without_status_subresource_is_absent_and_with_it_tracks_spec(store: Store) -> None:
    configmap = store.create(CONFIGMAPS, _cm("g"))
    assert "generation" not in configmap["metadata"]
    pod = store.create(
        PODS, {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    )
    assert pod["metadata"]["generation"] == 1
    assert pod["status"]["phase"] == "Pending"
    status = store.merge_patch(PODS, "default", "p", {"status": {"phase": "Running"}}, subresource="status")
    assert (status["status"]["phase"], status["metadata"]["generation"]) == ("Running", 1)
    spec = store.merge_patch(PODS, "default", "p", {"spec": {"activeDeadlineSeconds": 5}, "status": {"phase": "X"}})
    assert (spec["status"]["phase"], spec["metadata"]["generation"]) == ("Running", 2)


def test_graceful_pod_deletion_waits_for_a_second_delete(store: Store) -> None:
    store.graceful_pod_deletion = True
    pod = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
    }
    store.create(PODS, pod)
    store.delete(PODS, "default", "p")
    terminating = store.get(PODS, "default", "p")
    assert terminating is not None
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 30
    store.delete(PODS, "default", "p")
    assert store.get(PODS, "default", "p") is None


def test_history_limit_compacts_and_old_versions_are_gone(store: Store) -> None:
    store.history_limit = 3
    resource_type = store.resolve(CONFIGMAPS)
    first = store.create(CONFIGMAPS, _cm("h0"))
    for index in range(1, 6):
        store.create(CONFIGMAPS, _cm(f"h{index}"))
    with pytest.raises(ApiError) as raised:
        store.history_since(resource_type, int(first["metadata"]["resourceVersion"]))
    assert raised.value.code == 410
    recent = store.history_since(resource_type, int(store.resource_version) - 2)
    assert [obj["metadata"]["name"] for _, obj in recent] == ["h4", "h5"]


def test_crd_registers_versions_and_deletion_removes_resources(store: Store) -> None:
    store.create(CRD_RESOURCE, CRD)
    created = store.create("store.test/v1/things", {"metadata": {"name": "t"}, "spec": {"x": 1}})
    assert created["apiVersion"] == "store.test/v1"
    as_v2 = store.get("store.test/v2/things", None, "t")
    assert as_v2 is not None
    assert as_v2["apiVersion"] == "store.test/v2"
    events: list[str] = []
    store.subscribe("store.test/v1/things", lambda e: events.append(e["type"]))
    store.delete(CRD_RESOURCE, None, "things.store.test")
    assert events == ["DELETED"]
    assert store.get(CRD_RESOURCE, None, "things.store.test") is None
    with pytest.raises(ApiError):
        store.resolve("store.test/v1/things")


def test_crd_deletion_waits_for_custom_resource_finalizers(store: Store) -> None:
    store.create(CRD_RESOURCE, CRD)
    store.create("store.test/v1/things", {"metadata": {"name": "held", "finalizers": ["x/y"]}})
    store.delete(CRD_RESOURCE, None, "things.store.test")
    crd = store.get(CRD_RESOURCE, None, "things.store.test")
    assert crd is not None
    assert crd["metadata"]["deletionTimestamp"]
    store.merge_patch("store.test/v1/things", None, "held", {"metadata": {"finalizers": None}})
    assert store.get(CRD_RESOURCE, None, "things.store.test") is None


def test_namespace_deletion_without_a_loop_empties_it(store: Store) -> None:
    store.create(CONFIGMAPS, _cm("inside", namespace="other"))
    store.create(CONFIGMAPS, _cm("held", namespace="other", finalizers=["x/y"]))
    store.delete("v1/namespaces", None, "other")
    namespace = store.get("v1/namespaces", None, "other")
    assert namespace is not None
    assert namespace["status"]["phase"] == "Terminating"
    assert store.get(CONFIGMAPS, "other", "inside") is None
    with pytest.raises(ApiError) as raised:
        store.create(CONFIGMAPS, _cm("new", namespace="other"))
    assert raised.value.code == 403
    store.merge_patch(CONFIGMAPS, "other", "held", {"metadata": {"finalizers": None}})
    assert store.get("v1/namespaces", None, "other") is None


def test_list_selectors_and_cluster_wide(store: Store) -> None:
    store.create(CONFIGMAPS, _cm("a", labels={"app": "x"}))
    store.create(CONFIGMAPS, _cm("b", namespace="other", labels={"app": "x"}))
    store.create(CONFIGMAPS, _cm("c", labels={"app": "y"}))
    everywhere = store.list(CONFIGMAPS, label_selector="app=x")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everywhere] == [
        ("default", "a"),
        ("other", "b"),
    ]
    assert [o["metadata"]["name"] for o in store.list(CONFIGMAPS, "default", field_selector="metadata.name!=a")] == [
        "c"
    ]


def test_dangling_owner_references_without_a_loop(store: Store) -> None:
    events: list[tuple[str, str]] = []
    store.subscribe(CONFIGMAPS, lambda e: events.append((e["type"], e["object"]["metadata"]["name"])))
    owner = store.create(CONFIGMAPS, _cm("owner"))
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ghost = {**reference, "name": "ghost", "uid": "missing"}
    store.create(CONFIGMAPS, _cm("orphan", ownerReferences=[ghost]))
    store.create(CONFIGMAPS, _cm("half", ownerReferences=[reference, ghost]))
    assert store.get(CONFIGMAPS, "default", "orphan") is None
    half = store.get(CONFIGMAPS, "default", "half")
    assert half is not None
    assert half["metadata"]["ownerReferences"] == [reference]
    assert events == [
        ("ADDED", "owner"),
        ("ADDED", "orphan"),
        ("DELETED", "orphan"),
        ("ADDED", "half"),
        ("MODIFIED", "half"),
    ]
