"""Pure functions of kubesim: selectors, patches, structural schemas, server-side apply and table cells."""

from typing import Any

import pytest

from kubesim import apply, schema, tables
from kubesim.errors import ApiError
from kubesim.patch import json_patch, merge_patch, strategic_merge_patch
from kubesim.selectors import field_value, label_selector_matcher, parse_field_selector, parse_label_selector

# --- selectors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a in (1, 2)", {"a": "2"}, True),
        ("a notin (1,2)", {}, True),
        ("a notin (1,2)", {"a": "1"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a,b=2,c in (x)", {"a": "0", "b": "2", "c": "x"}, True),
        ("example.com/role=worker", {"example.com/role": "worker"}, True),
    ],
)
def test_label_selector_operators(selector: str, labels: dict[str, str], expected: bool) -> None:
    predicate = parse_label_selector(selector)
    assert predicate is not None
    assert predicate(labels) is expected


@pytest.mark.parametrize("selector", ["a b", "a in 1", "!a=1", "=x"])
def test_malformed_label_selectors_are_bad_requests(selector: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_label_selector(selector)
    assert raised.value.code == 400


def test_empty_selectors_match_everything() -> None:
    assert parse_label_selector("") is None
    assert parse_field_selector(" ") is None
    assert label_selector_matcher({})({"anything": "x"})
    assert not label_selector_matcher(None)({"anything": "x"})


def test_label_selector_objects() -> None:
    matches = label_selector_matcher(
        {
            "matchLabels": {"app": "x"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["bad"]},
            ],
        }
    )
    assert matches({"app": "x", "tier": "a"})
    assert not matches({"app": "x", "tier": "c"})
    assert not matches({"app": "x", "tier": "a", "legacy": ""})
    assert not matches({"app": "x", "tier": "a", "zone": "bad"})


def test_field_selectors_on_dotted_paths() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "hostNetwork": True}, "status": {"phase": "Running"}}
    assert field_value(pod, "spec.hostNetwork") == "true"
    assert field_value(pod, "spec.missing.deeper") == ""
    predicate = parse_field_selector("spec.nodeName=n1,status.phase!=Failed,metadata.name==p")
    assert predicate is not None
    assert predicate(pod)
    other = parse_field_selector("spec.nodeName!=n1")
    assert other is not None
    assert not other(pod)
    with pytest.raises(ApiError):
        parse_field_selector("spec.nodeName")


# --- patches ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_leaves_the_target_untouched() -> None:
    target = {"a": {"b": 1}}
    merge_patch(target, {"a": {"b": 2}})
    assert target == {"a": {"b": 1}}


def test_json_patch_operations_and_errors() -> None:
    doc = {"list": [1, 2], "obj": {"k~/": "v"}}
    patched = json_patch(
        doc,
        [
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "add", "path": "/list/0", "value": 0},
            {"op": "test", "path": "/obj/k~0~1", "value": "v"},
            {"op": "move", "from": "/obj/k~0~1", "path": "/moved"},
        ],
    )
    assert patched == {"list": [0, 1, 2, 3], "obj": {}, "moved": "v"}
    assert doc == {"list": [1, 2], "obj": {"k~/": "v"}}
    for bad in (
        [{"op": "remove", "path": "/nope"}],
        [{"op": "replace", "path": "/list/9", "value": 1}],
        [{"op": "frobnicate", "path": "/list"}],
        [{"op": "test", "path": "/list", "value": []}],
    ):
        with pytest.raises(ApiError) as raised:
            json_patch(doc, bad)
        assert raised.value.code == 422


def test_strategic_merge_directives() -> None:
    original = {
        "metadata": {"finalizers": ["a", "b"]},
        "spec": {
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}], "args": ["x"]}],
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        },
    }
    patch = {
        "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}], "args": ["y"]}],
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
        },
    }
    result = strategic_merge_patch(original, patch)
    assert result["metadata"]["finalizers"] == ["b", "c"]
    container = result["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    assert container["args"] == ["y"]
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    assert strategic_merge_patch(original, {"spec": {"$patch": "delete"}}) == {"metadata": {"finalizers": ["a", "b"]}}
    replaced = strategic_merge_patch(original, {"spec": {"$patch": "replace", "new": 1}})
    assert replaced["spec"] == {"new": 1}


def test_strategic_merge_conditions_and_owner_references_by_key() -> None:
    original = {
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Other", "status": "True"}]},
        "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
    }
    patch = {
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        "metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
    }
    result = strategic_merge_patch(original, patch)
    assert result["status"]["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "True"}]
    assert [r["uid"] for r in result["metadata"]["ownerReferences"]] == ["1", "2"]


# --- schema ----------------------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-z]+$"},
                            "on": {"type": "boolean", "default": True},
                        },
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "nested": {"type": "object", "default": {}, "properties": {"level": {"type": "integer", "default": 3}}},
                "maybe": {"type": "string", "nullable": True},
                "choice": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            },
        }
    },
}


def test_defaults_nested_objects_and_array_items() -> None:
    obj: dict[str, Any] = {"spec": {"items": [{"name": "a"}, {"name": "b", "on": False}]}}
    schema.apply_defaults(SCHEMA, obj)
    assert obj["spec"]["items"] == [{"name": "a", "on": True}, {"name": "b", "on": False}]
    assert obj["spec"]["nested"] == {"level": 3}


def test_pruning_reports_unknown_fields_and_keeps_nullable_nulls() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "n", "anything": 1},
        "spec": {
            "labels": {"a": "b"},
            "unknown": 1,
            "items": [{"name": "a", "extra": 2}],
            "maybe": None,
            "choice": None,
        },
    }
    assert schema.unknown_fields(SCHEMA, obj) == ["spec.unknown", "spec.items[0].extra"]
    schema.prune(SCHEMA, obj, root=True)
    assert obj["spec"] == {"labels": {"a": "b"}, "items": [{"name": "a"}], "maybe": None}
    assert obj["metadata"] == {"name": "n", "anything": 1}


def test_validation_names_fields() -> None:
    obj = {"spec": {"items": [{"name": "UPPER"}], "labels": {"a": 1}, "choice": 1.5}}
    causes = schema.validate(SCHEMA, obj)
    assert {c["field"] for c in causes} == {"spec.items[0].name", "spec.labels.a", "spec.choice"}


# --- server-side apply -----------------------------------------------------------------------------------


def test_fields_v1_round_trip_with_keyed_items() -> None:
    applied = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}, "finalizers": ["x"]},
        "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": [{"key": "k"}]},
    }
    paths = apply.field_paths(applied, apply.BUILTIN_LISTS)
    assert ("f:spec", "f:containers", 'k:{"name":"c"}', "f:image") in paths
    assert ("f:spec", "f:tolerations") in paths
    assert ("f:metadata", "f:finalizers", 'v:"x"') in paths
    assert ("f:metadata", "f:name") not in paths
    assert apply.from_fields_v1(apply.to_fields_v1(paths)) == paths


def test_apply_conflicts_name_the_field_and_manager() -> None:
    base = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    owned = apply.apply_to_new(base, "first", "t")
    with pytest.raises(ApiError) as raised:
        apply.server_side_apply(owned, {**base, "data": {"a": "2"}}, "second", force=False, time="t", subresource=None)
    assert raised.value.code == 409
    assert raised.value.details is not None
    assert raised.value.details["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "first": .data.a', "field": ".data.a"}
    ]
    same_value = apply.server_side_apply(owned, base, "second", force=False, time="t", subresource=None)
    assert sorted(m["manager"] for m in same_value["metadata"]["managedFields"]) == ["first", "second"]


# --- tables ----------------------------------------------------------------------------------------------


def test_jsonpath_subset_and_durations() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "x"}, {"type": "Ready", "status": "True"}]}, "l": [1, 2]}
    assert tables.jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert tables.jsonpath(obj, ".l[1]") == [2]
    assert tables.jsonpath(obj, ".l[*]") == [1, 2]
    assert tables.jsonpath(obj, ".missing.path") == []
    assert [tables.human_duration(s) for s in (5, 130, 700, 4 * 3600 + 60, 30 * 3600, 5 * 86400)] == [
        "5s",
        "2m10s",
        "11m",
        "4h1m",
        "30h",
        "5d",
    ]


def test_a_repeated_apply_keeps_its_timestamp() -> None:
    base = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    owned = apply.apply_to_new(base, "m", "2026-01-01T00:00:00Z")
    again = apply.server_side_apply(owned, base, "m", force=False, time="2026-01-02T00:00:00Z", subresource=None)
    assert again == owned
    changed = apply.server_side_apply(
        owned, {**base, "data": {"b": "2"}}, "m", force=False, time="2026-01-02T00:00:00Z", subresource=None
    )
    assert changed["metadata"]["managedFields"][0]["time"] == "2026-01-02T00:00:00Z"
    assert changed["data"] == {"b": "2"}


@pytest.mark.parametrize(
    "timestamp",
    ["2026-11-23T13:38:46Z", "2026-11-23T13:38:46+00:00", "2026-11-23T13:38:46.123456Z", "2026-11-23T14:38:46+01:00"],
)
def test_table_age_reads_every_rfc3339_form(timestamp: str) -> None:
    """Clients (kopf's Events among them) send offsets and fractions; a table row must not fail on them."""
    assert tables.age(timestamp) not in ("", "<unknown>")


@pytest.mark.parametrize(
    "selector",
    [
        "kmm.node.kubernetes.io/version-module." + "x" * 60,  # name part over 63 characters
        "Bad_Prefix.io/name=value",
        "app in (a,b),-dash-start",
    ],
)
def test_label_selector_with_an_invalid_key_is_a_bad_request(selector: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_label_selector(selector)
    assert raised.value.code == 400
