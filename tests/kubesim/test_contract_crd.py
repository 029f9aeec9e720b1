"""Custom resources: schema defaults, validation (422 naming the field), pruning, status subresource, generation,
and printer columns in Table output."""

from typing import Any

import pytest
from kubernetes import client

from tests.kubesim.contract_support import WIDGET_GROUP, WIDGET_PLURAL, WIDGET_VERSION, Cluster

pytestmark = pytest.mark.realcluster

BASE = f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}"


def _widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{WIDGET_GROUP}/{WIDGET_VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
def widgets(cluster: Cluster, namespace: str) -> str:
    cluster.widget_crd()
    return f"{BASE}/namespaces/{namespace}/{WIDGET_PLURAL}"


def test_defaults_are_applied_including_inside_arrays(cluster: Cluster, widgets: str) -> None:
    status, created = cluster.http("POST", widgets, _widget("d", {"size": 2, "ports": [{"port": 80}]}))
    assert status == 201
    assert created["spec"]["mode"] == "slow"
    assert created["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert created["metadata"]["generation"] == 1


def test_unknown_fields_are_pruned_unless_preserved(cluster: Cluster, widgets: str) -> None:
    spec = {"size": 1, "bogus": True, "extra": {"anything": {"goes": 1}}}
    status, created = cluster.http("POST", widgets, _widget("p", spec))
    assert status == 201
    assert "bogus" not in created["spec"]
    assert created["spec"]["extra"] == {"anything": {"goes": 1}}
    status, created = cluster.http("POST", widgets, {**_widget("q", {"size": 1}), "topLevel": "dropped"})
    assert status == 201
    assert "topLevel" not in created


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({}, "spec.size", "FieldValueRequired"),
        ({"size": "three"}, "spec.size", "FieldValueTypeInvalid"),
        ({"size": 0}, "spec.size", "FieldValueInvalid"),
        ({"size": 11}, "spec.size", "FieldValueInvalid"),
        ({"size": 1, "mode": "warp"}, "spec.mode", "FieldValueNotSupported"),
        ({"size": 1, "ports": [{"port": 1}, {"port": 2}, {"port": 3}]}, "spec.ports", "FieldValueTooMany"),
        ({"size": 1, "ports": [{"port": "http"}]}, "spec.ports[0].port", "FieldValueTypeInvalid"),
        ({"size": 1, "target": True}, "spec.target", "FieldValueTypeInvalid"),
    ],
)
def test_schema_violations_are_422_naming_the_field(
    cluster: Cluster, widgets: str, spec: dict[str, Any], field: str, reason: str
) -> None:
    status, body = cluster.http("POST", widgets, _widget("bad", spec))
    assert status == 422
    assert body["kind"] == "Status"
    assert body["reason"] == "Invalid"
    causes = body["details"]["causes"]
    assert field in [c["field"] for c in causes]
    assert reason in [c["reason"] for c in causes if c["field"] == field]
    assert field in body["message"]
    assert body["message"].startswith(f'Widget.{WIDGET_GROUP} "bad" is invalid')


def test_int_or_string_accepts_both(cluster: Cluster, widgets: str) -> None:
    assert cluster.http("POST", widgets, _widget("i", {"size": 1, "target": 3}))[0] == 201
    assert cluster.http("POST", widgets, _widget("s", {"size": 1, "target": "50%"}))[0] == 201


def test_main_resource_ignores_status_and_status_ignores_spec(cluster: Cluster, widgets: str) -> None:
    status, created = cluster.http("POST", widgets, {**_widget("st", {"size": 1}), "status": {"phase": "Set"}})
    assert status == 201
    assert "status" not in created or created["status"] != {"phase": "Set"}
    status, patched = cluster.http(
        "PATCH",
        f"{widgets}/st/status",
        {"status": {"phase": "Running"}, "spec": {"size": 9}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    assert patched["status"] == {"phase": "Running"}
    assert patched["spec"]["size"] == 1
    assert patched["metadata"]["generation"] == 1
    status, patched = cluster.http(
        "PATCH",
        f"{widgets}/st",
        {"status": {"phase": "Ignored"}, "spec": {"size": 2}},
        content_type="application/merge-patch+json",
    )
    assert patched["status"] == {"phase": "Running"}
    assert patched["spec"]["size"] == 2
    assert patched["metadata"]["generation"] == 2


def test_generation_changes_only_with_spec(cluster: Cluster, widgets: str) -> None:
    _status, created = cluster.http("POST", widgets, _widget("g", {"size": 1}))
    assert created["metadata"]["generation"] == 1
    _, labelled = cluster.http(
        "PATCH", f"{widgets}/g", {"metadata": {"labels": {"a": "b"}}}, content_type="application/merge-patch+json"
    )
    assert labelled["metadata"]["generation"] == 1
    assert labelled["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    _, status_changed = cluster.http(
        "PATCH", f"{widgets}/g/status", {"status": {"count": 3}}, content_type="application/merge-patch+json"
    )
    assert status_changed["metadata"]["generation"] == 1
    _, spec_changed = cluster.http(
        "PATCH", f"{widgets}/g", {"spec": {"size": 5}}, content_type="application/merge-patch+json"
    )
    assert spec_changed["metadata"]["generation"] == 2


def test_put_of_a_custom_resource_needs_a_resource_version(cluster: Cluster, widgets: str) -> None:
    cluster.http("POST", widgets, _widget("pv", {"size": 1}))
    status, body = cluster.http("PUT", f"{widgets}/pv", _widget("pv", {"size": 2}))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"


def test_update_is_validated_too(cluster: Cluster, widgets: str, namespace: str) -> None:
    cluster.http("POST", widgets, _widget("v", {"size": 1}))
    with pytest.raises(client.ApiException) as raised:
        cluster.custom.patch_namespaced_custom_object(
            WIDGET_GROUP, WIDGET_VERSION, namespace, WIDGET_PLURAL, "v", {"spec": {"size": 100}}
        )
    assert raised.value.status == 422


def test_table_output_uses_printer_columns(cluster: Cluster, widgets: str) -> None:
    cluster.http("POST", widgets, _widget("t", {"size": 4}))
    cluster.http(
        "PATCH", f"{widgets}/t/status", {"status": {"phase": "Up"}}, content_type="application/merge-patch+json"
    )
    status, table = cluster.http(
        "GET", widgets, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    )
    assert status == 200
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:3] == ["Name", "Size", "Phase"]
    row = next(r for r in table["rows"] if r["cells"][0] == "t")
    assert row["cells"][1:3] == [4, "Up"]
    assert row["object"]["metadata"]["name"] == "t"


def test_strict_field_validation_rejects_unknown_fields(cluster: Cluster, widgets: str) -> None:
    status, body = cluster.http("POST", f"{widgets}?fieldValidation=Strict", _widget("strict", {"size": 1, "nope": 1}))
    assert status == 400
    assert "nope" in body["message"]


def test_strategic_merge_patch_is_refused_for_custom_resources(cluster: Cluster, widgets: str) -> None:
    cluster.http("POST", widgets, _widget("smp", {"size": 1}))
    status, body = cluster.http(
        "PATCH", f"{widgets}/smp", {"spec": {"size": 2}}, content_type="application/strategic-merge-patch+json"
    )
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


def test_replacing_without_defaulted_fields_keeps_the_generation(cluster: Cluster, widgets: str) -> None:
    _, created = cluster.http("POST", widgets, _widget("keep", {"size": 2}))
    assert created["spec"]["mode"] == "slow"
    replacement = {**_widget("keep", {"size": 2}), "metadata": {**created["metadata"]}}
    status, replaced = cluster.http("PUT", f"{widgets}/keep", replacement)
    assert status == 200
    assert replaced["spec"]["mode"] == "slow"
    assert replaced["metadata"]["generation"] == 1
