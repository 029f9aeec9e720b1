"""Custom resources: schema defaults, validation (422 naming the field), pruning, status subresource, generation,
and printer columns in Table output."""

from typing import Any

import pytest
from kubernetes import client

from kubesim.polling import wait_for
from tests.kubesim.contract_support import WIDGET_CRD_NAME, WIDGET_GROUP, WIDGET_PLURAL, WIDGET_VERSION, Cluster
from tests.kubesim.contract_support import widget as _widget

pytestmark = pytest.mark.realcluster

MERGE = "application/merge-patch+json"


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


def test_create_while_the_crd_is_terminating_is_forbidden(cluster: Cluster, widgets: str) -> None:
    cluster.http("POST", widgets, _widget("holder", finalizers=["example.com/hold"]))
    crd = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{WIDGET_CRD_NAME}"
    assert cluster.http("DELETE", crd)[0] == 200
    try:
        wait_for(lambda: "deletionTimestamp" in cluster.http("GET", crd)[1]["metadata"], message="CRD terminating")
        status, body = cluster.http("POST", widgets, _widget("late"))
        assert (status, body["reason"]) == (403, "Forbidden")
        assert body["message"] == (
            f'{WIDGET_PLURAL}.{WIDGET_GROUP} "late" is forbidden: '
            "create not allowed while custom resource definition is terminating"
        )
        assert body["details"] == {"name": "late", "group": WIDGET_GROUP, "kind": WIDGET_PLURAL}
    finally:
        cluster.http("PATCH", f"{widgets}/holder", {"metadata": {"finalizers": None}}, content_type=MERGE)
    wait_for(lambda: cluster.http("GET", crd)[0] == 404, timeout=30, message="the CRD gone with its last widget")


def test_put_with_another_uid_conflicts_and_a_patch_cannot_change_it(cluster: Cluster, widgets: str) -> None:
    _, created = cluster.http("POST", widgets, _widget("uid"))
    stale = {**created, "metadata": {**created["metadata"], "uid": "00000000-0000-0000-0000-000000000000"}}
    for path in (f"{widgets}/uid", f"{widgets}/uid/status"):
        status, body = cluster.http("PUT", path, stale)
        assert (status, body["reason"]) == (409, "Conflict")
        assert (
            "Precondition failed: UID in precondition: 00000000-0000-0000-0000-000000000000, "
            f"UID in object meta: {created['metadata']['uid']}" in body["message"]
        )
        assert body["details"] == {"name": "uid", "group": WIDGET_GROUP, "kind": WIDGET_PLURAL}
    status, body = cluster.http("PATCH", f"{widgets}/uid", {"metadata": {"uid": "x"}}, content_type=MERGE)
    assert (status, body["reason"]) == (422, "Invalid")
    assert {(c["field"], c["message"]) for c in body["details"]["causes"]} == {
        ("metadata.uid", 'Invalid value: "x": field is immutable')
    }


CEL_SKIPPED = (
    "Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        # A missing, mistyped or unsupported value (or too many items) keeps the CEL rules from running.
        (
            {"mode": "fast"},
            [("spec.size", "FieldValueRequired", "Required value"), ("<nil>", "FieldValueInvalid", CEL_SKIPPED)],
        ),
        (
            {"size": 9, "mode": "warp"},
            [
                ("spec.mode", "FieldValueNotSupported", 'Unsupported value: "warp": supported values: "fast", "slow"'),
                ("<nil>", "FieldValueInvalid", CEL_SKIPPED),
            ],
        ),
        # A value out of bounds does not: the rules run and report too.
        (
            {"size": 11, "mode": "fast"},
            [
                (
                    "spec.size",
                    "FieldValueInvalid",
                    "Invalid value: 11: spec.size in body should be less than or equal to 10",
                ),
                ("spec", "FieldValueInvalid", "Invalid value: fast widgets are small"),
            ],
        ),
        ({"size": 7, "mode": "fast"}, [("spec", "FieldValueInvalid", "Invalid value: fast widgets are small")]),
    ],
)
def test_cel_rules_run_unless_the_schema_finds_a_blocking_error(
    cluster: Cluster, widgets: str, spec: dict[str, Any], causes: list[tuple[str, str, str]]
) -> None:
    status, body = cluster.http("POST", widgets, _widget("cel", spec))
    assert status == 422
    assert [(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]] == causes
    summary = ", ".join(f"{field}: {message}" for field, _, message in causes)
    expected = f"[{summary}]" if len(causes) > 1 else summary
    assert body["message"] == f'Widget.{WIDGET_GROUP} "cel" is invalid: {expected}'


def _unknown(*paths: str) -> list[str]:
    return [f'299 - "unknown field \\"{path}\\""' for path in paths]


def test_pruned_unknown_fields_are_reported_in_warning_headers(cluster: Cluster, widgets: str) -> None:
    body = {**_widget("warn", {"size": 1, "bogus": 1, "deep": {"x": 1}}), "extra": True, "status": {"odd": 1}}
    body["metadata"]["bogusMeta"] = 1
    status, created, warnings = cluster.http_with_warnings("POST", widgets, body)
    assert status == 201
    assert "bogus" not in created["spec"]
    assert warnings == _unknown("metadata.bogusMeta", "extra", "spec.bogus", "spec.deep", "status.odd")

    _, _, warnings = cluster.http_with_warnings("PATCH", f"{widgets}/warn", {"spec": {"zzz": 1}}, content_type=MERGE)
    assert warnings == _unknown("spec.zzz")
    current = cluster.http("GET", f"{widgets}/warn")[1]
    current["spec"]["again"] = 2
    status, _, warnings = cluster.http_with_warnings("PUT", f"{widgets}/warn", current)
    assert (status, warnings) == (200, _unknown("spec.again"))
    status, _, warnings = cluster.http_with_warnings(
        "POST", f"{widgets}?fieldValidation=Ignore", _widget("quiet", {"size": 1, "bogus": 1})
    )
    assert (status, warnings) == (201, [])
    status, _, warnings = cluster.http_with_warnings("POST", widgets, _widget("clean"))
    assert (status, warnings) == (201, [])


def test_strict_field_validation_names_every_unknown_field(cluster: Cluster, widgets: str) -> None:
    status, body = cluster.http("POST", f"{widgets}?fieldValidation=Strict", _widget("s", {"size": 1, "q": 1, "a": 2}))
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
        'unknown field "spec.a", unknown field "spec.q"'
    )


def test_a_body_of_another_kind_is_invalid(cluster: Cluster, widgets: str) -> None:
    status, body = cluster.http("POST", widgets, {**_widget("k"), "kind": "Gadget"})
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"] == f'Gadget.{WIDGET_GROUP} "k" is invalid: kind: Invalid value: "Gadget": must be Widget'
    assert body["details"] == {
        "name": "k",
        "group": WIDGET_GROUP,
        "kind": "Gadget",
        "causes": [
            {"reason": "FieldValueInvalid", "message": 'Invalid value: "Gadget": must be Widget', "field": "kind"}
        ],
    }
    status, body = cluster.http("POST", widgets, {**_widget("v"), "apiVersion": "other.example/v1"})
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == (
        f"the API version in the data (other.example/v1) does not match the expected API version "
        f"({WIDGET_GROUP}/{WIDGET_VERSION})"
    )
