"""Watch: from a resourceVersion, selectors, bookmarks, timeoutSeconds, 410 Gone, and the official client's Watch."""

import time
from typing import Any

import pytest
from kubernetes import client, watch

from tests.kubesim.contract_support import WIDGET_CRD, WIDGET_GROUP, WIDGET_VERSION, Cluster, read_events, widget

pytestmark = pytest.mark.realcluster


def _configmap(name: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {}}


@pytest.mark.core_kinds
def test_watch_from_a_resource_version_replays_later_changes(cluster: Cluster, namespace: str) -> None:
    start = cluster.core.list_namespaced_config_map(namespace).metadata.resource_version
    cluster.core.create_namespaced_config_map(namespace, _configmap("w1"))
    cluster.core.patch_namespaced_config_map("w1", namespace, {"data": {"a": "1"}})
    cluster.core.delete_namespaced_config_map("w1", namespace)
    response = cluster.watch_lines(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&resourceVersion={start}&timeoutSeconds=1"
    )
    events = [(e["type"], e["object"]["metadata"]["name"]) for e in read_events(response)]
    assert events[:3] == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


@pytest.mark.core_kinds
def test_watch_without_resource_version_starts_with_current_state(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_config_map(namespace, _configmap("present"))
    response = cluster.watch_lines(f"/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=1")
    events = [(e["type"], e["object"]["metadata"]["name"]) for e in read_events(response)]
    assert ("ADDED", "present") in events


@pytest.mark.core_kinds
def test_watch_path_form_and_resource_versions_increase(cluster: Cluster, namespace: str) -> None:
    start = cluster.core.list_namespaced_config_map(namespace).metadata.resource_version
    for index in range(3):
        cluster.core.create_namespaced_config_map(namespace, _configmap(f"p{index}"))
    response = cluster.watch_lines(
        f"/api/v1/watch/namespaces/{namespace}/configmaps?resourceVersion={start}&timeoutSeconds=1"
    )
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in read_events(response)]
    assert len(versions) == 3
    assert versions == sorted(versions)
    assert versions[0] > int(start)


@pytest.mark.core_kinds
def test_watch_with_a_label_selector_sees_objects_enter_and_leave(cluster: Cluster, namespace: str) -> None:
    start = cluster.core.list_namespaced_config_map(namespace).metadata.resource_version
    cluster.core.create_namespaced_config_map(namespace, _configmap("sel", {"app": "other"}))
    cluster.core.patch_namespaced_config_map("sel", namespace, {"metadata": {"labels": {"app": "mine"}}})
    cluster.core.patch_namespaced_config_map("sel", namespace, {"data": {"x": "1"}})
    cluster.core.patch_namespaced_config_map("sel", namespace, {"metadata": {"labels": {"app": "other"}}})
    response = cluster.watch_lines(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&labelSelector=app%3Dmine"
        f"&resourceVersion={start}&timeoutSeconds=1"
    )
    events = [e["type"] for e in read_events(response)]
    assert events == ["ADDED", "MODIFIED", "DELETED"]


@pytest.mark.core_kinds
def test_watch_bookmarks_when_allowed(cluster: Cluster, namespace: str) -> None:
    if cluster.sim is None:
        pytest.skip("a real API server sends bookmarks only about once a minute")
    start = cluster.core.list_namespaced_config_map(namespace).metadata.resource_version
    response = cluster.watch_lines(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&allowWatchBookmarks=true"
        f"&resourceVersion={start}&timeoutSeconds=1"
    )
    bookmarks = [e for e in read_events(response) if e["type"] == "BOOKMARK"]
    assert bookmarks
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) >= int(start)


@pytest.mark.core_kinds
def test_watch_timeout_seconds_ends_the_stream(cluster: Cluster, namespace: str) -> None:
    start = time.monotonic()
    response = cluster.watch_lines(f"/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=1")
    list(read_events(response))
    assert time.monotonic() - start < 8


@pytest.mark.core_kinds
def test_send_initial_events_ends_with_a_bookmark(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_config_map(namespace, _configmap("init"))
    response = cluster.watch_lines(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    events = list(read_events(response))
    names = [e["object"]["metadata"].get("name") for e in events if e["type"] == "ADDED"]
    assert "init" in names
    end = next(e for e in events if e["type"] == "BOOKMARK")
    assert end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"


@pytest.mark.core_kinds
def test_compacted_resource_version_is_410_gone(cluster: Cluster, namespace: str) -> None:
    sim = cluster.sim
    if sim is not None:
        before = cluster.core.list_namespaced_config_map(namespace).metadata.resource_version
        cluster.core.create_namespaced_config_map(namespace, _configmap("old"))
        sim.compact()
        since = before
    else:
        since = "1"
    response = cluster.watch_lines(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&resourceVersion={since}&timeoutSeconds=5"
    )
    events = list(read_events(response))
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["kind"] == "Status"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] in ("Expired", "Gone")


@pytest.mark.core_kinds
def test_official_client_watch(cluster: Cluster, namespace: str) -> None:
    listed = cluster.core.list_namespaced_config_map(namespace)
    cluster.core.create_namespaced_config_map(namespace, _configmap("client"))
    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
        cluster.core.list_namespaced_config_map,
        namespace,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    )
    events = [(e["type"], e["object"].metadata.name) for e in stream]
    assert events[0] == ("ADDED", "client")
    assert isinstance(events, list)


@pytest.mark.core_kinds
def test_official_client_watch_raises_on_410(cluster: Cluster, namespace: str) -> None:
    sim = cluster.require_sim()
    before = cluster.core.list_namespaced_config_map(namespace).metadata.resource_version
    cluster.core.create_namespaced_config_map(namespace, _configmap("x"))
    sim.compact()
    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
        cluster.core.list_namespaced_config_map, namespace, resource_version=before, timeout_seconds=1
    )
    with pytest.raises(client.ApiException) as raised:
        list(stream)
    assert raised.value.status == 410


@pytest.mark.core_kinds
def test_watch_as_table_sends_one_row_tables(cluster: Cluster, namespace: str) -> None:
    start = cluster.core.list_namespaced_config_map(namespace).metadata.resource_version
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "tabled"}, "data": {"a": "1"}})
    response = cluster.api.rest_client.pool_manager.request(
        "GET",
        f"{cluster.api.configuration.host}/api/v1/namespaces/{namespace}/configmaps"
        f"?watch=true&resourceVersion={start}&timeoutSeconds=1",
        headers={**cluster.headers(None), "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        preload_content=False,
    )
    event = next(read_events(response))
    assert event["type"] == "ADDED"
    assert event["object"]["kind"] == "Table"
    assert event["object"]["rows"][0]["cells"][0] == "tabled"
    response.release_conn()


def test_watch_ends_when_the_crd_is_deleted(cluster: Cluster, namespace: str) -> None:
    cluster.widget_crd()
    response = cluster.watch_lines(
        f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}/namespaces/{namespace}/widgets?watch=true&timeoutSeconds=60", timeout=30
    )
    cluster.extensions.delete_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
    started = time.monotonic()
    assert list(read_events(response)) == []
    assert time.monotonic() - started < 30


def _list_options_invalid(status: int, body: Any, *forbidden: tuple[str, str]) -> None:
    """A 422 for the request's ListOptions, naming each forbidden (field, message)."""
    assert status == 422
    assert (body["kind"], body["reason"]) == ("Status", "Invalid")
    assert (body["details"]["group"], body["details"]["kind"]) == ("meta.k8s.io", "ListOptions")
    causes = [(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]]
    assert causes == [(field, "FieldValueForbidden", f"Forbidden: {message}") for field, message in forbidden]
    assert body["message"].startswith('ListOptions.meta.k8s.io "" is invalid: ')


def test_send_initial_events_needs_resource_version_match(cluster: Cluster, widgets: str) -> None:
    needs_match = ("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
    for value in ("true", "false"):
        status, body = cluster.http("GET", f"{widgets}?watch=true&sendInitialEvents={value}&allowWatchBookmarks=true")
        _list_options_invalid(status, body, needs_match)
    status, body = cluster.http("GET", f"{widgets}?watch=true&resourceVersionMatch=NotOlderThan")
    _list_options_invalid(
        status,
        body,
        ("resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
    )
    status, body = cluster.http("GET", f"{widgets}?sendInitialEvents=true&resourceVersionMatch=NotOlderThan")
    _list_options_invalid(
        status,
        body,
        ("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"),
        ("sendInitialEvents", "sendInitialEvents is forbidden for list"),
    )


def test_watch_list_of_custom_resources_ends_with_a_bookmark(cluster: Cluster, widgets: str) -> None:
    _, created = cluster.http("POST", widgets, widget("listed"))
    response = cluster.watch_lines(
        f"{widgets}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    events = list(read_events(response))
    if events and events[0]["type"] == "ERROR" and "RequestWatchProgress" in events[0]["object"]["message"]:
        pytest.skip("this server's etcd cannot serve watch lists (etcd 3.5 or later can)")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events[:1]] == [("ADDED", "listed")]
    bookmark = events[1]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["kind"] == "Widget"
    assert bookmark["object"]["apiVersion"] == f"{WIDGET_GROUP}/{WIDGET_VERSION}"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])


def test_selector_watch_reports_the_last_matching_state_when_an_object_leaves(cluster: Cluster, widgets: str) -> None:
    _, listed = cluster.http("GET", widgets)
    start = listed["metadata"]["resourceVersion"]
    cluster.http("POST", widgets, widget("leaver", labels={"app": "mine"}))
    status, left = cluster.http(
        "PATCH",
        f"{widgets}/leaver",
        {"metadata": {"labels": {"app": "other"}, "annotations": {"moved": "yes"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    response = cluster.watch_lines(
        f"{widgets}?watch=true&labelSelector=app%3Dmine&resourceVersion={start}&timeoutSeconds=1"
    )
    events = list(read_events(response))
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    deleted = events[1]["object"]["metadata"]
    # The object as it last matched, at the resourceVersion of the change that made it leave.
    assert deleted["labels"] == {"app": "mine"}
    assert "annotations" not in deleted
    assert deleted["resourceVersion"] == left["metadata"]["resourceVersion"]
