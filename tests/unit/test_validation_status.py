"""Validation reasons, the status reducer and the live-object comparison."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from onload_operator.planner.checks import (
    INVALID_REGEXP,
    INVALID_SPEC,
    MISSING_USER_IMAGE,
    NAME_TOO_LONG,
    UNSAFE_HOST_PATH,
    Problem,
    validate,
)
from onload_operator.planner.compare import (
    CHANGED,
    DRIFTED,
    MISSING,
    apply_reason,
    contains,
    foreign_managers,
)
from onload_operator.planner.nodes import crs_to_wake, orphaned_gate_labels, removal_patches
from onload_operator.planner.status import Observation, compute_status
from onload_operator.planner.takeover import stale_selector_keys
from onload_operator.render import names
from tests.unit.onload_samples import LATER, NOW, cr_body, views


def reasons(body: dict[str, object]) -> list[str]:
    return [p.reason for p in validate(body)[1]]


def test_name_and_namespace_may_have_32_characters_together() -> None:
    assert reasons(cr_body(name="a" * 16, namespace="b" * 16)) == []
    assert reasons(cr_body(name="a" * 17, namespace="b" * 16)) == [NAME_TOO_LONG]


def test_regexps_are_checked_with_re2() -> None:
    body = cr_body()
    body["spec"]["onload"]["kernelMappings"].append({"regexp": r"(?<=x)y", "kernelModuleImage": "i"})
    onload, problems = validate(body)
    assert onload is not None
    assert [(p.reason, "kernelMappings[1]" in p.message) for p in problems] == [(INVALID_REGEXP, True)]


@pytest.mark.parametrize(
    ("path", "safe"),
    [
        ("/opt/onload/", True),
        ("/opt/onload", True),
        ("/srv/onload-8.1", True),
        ("/opt/.onload", True),
        ("/", False),
        ("/var", False),
        ("/opt/", False),
        ("/opt/my onload/", False),
        ("/opt/onload;reboot", False),
        ("/opt/../etc", False),
        ("/opt/./onload", False),
        ("/opt//onload", False),
        ("opt/onload", False),
        ("/usr/lib", False),
        ("/var/lib/kubelet", False),
        ("/var/lib/onload-8.1", False),
        ("/etc/kubernetes", False),
        ("/root/.ssh", False),
        ("/lib64/onload", False),
        ("/run/containerd", False),
        ("/opt/cni/bin", False),
        ("/home/user", False),
    ],
)
def test_host_onload_path_must_be_a_dedicated_directory(path: str, safe: bool) -> None:
    """The device plugin installs into it, removes from it and relabels it recursively in postStart: `/var` or a
    path with shell syntax must be refused."""
    assert reasons(cr_body(devicePlugin={"hostOnloadPath": path})) == ([] if safe else [UNSAFE_HOST_PATH])


def test_spec_errors_name_the_field() -> None:
    body = cr_body()
    body["spec"]["onload"]["userImage"] = ""
    onload, problems = validate(body)
    assert onload is None
    assert problems[0].reason == MISSING_USER_IMAGE
    assert problems[0].message.startswith("spec.onload.userImage:")
    body = cr_body(devicePlugin={"setPreload": True, "mountOnload": True})
    assert reasons(body) == [INVALID_SPEC]
    assert reasons(cr_body(name="x" * 40))[:1] == [NAME_TOO_LONG]


def test_last_transition_time_moves_only_when_a_condition_flips() -> None:
    first = compute_status(Observation(1, selected=2, module_ready=0), None, NOW)
    again = compute_status(Observation(1, selected=2, module_ready=1), first, LATER)
    assert {c["lastTransitionTime"] for c in again["conditions"]} == {NOW}
    assert again["nodes"]["moduleReady"] == 1
    ready = compute_status(Observation(2, selected=2, module_ready=2, device_plugin_ready=2, version="1"), again, LATER)
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert times == {"Ready": LATER, "Progressing": LATER, "Degraded": NOW}
    assert all(c["observedGeneration"] == 2 for c in ready["conditions"])


def test_problems_win_over_counts() -> None:
    status = compute_status(Observation(1, problems=[Problem("X", "bad")], selected=1, module_ready=1), None, NOW)
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "False", "X"),
        ("Progressing", "False", "X"),
        ("Degraded", "True", "X"),
    ]


def test_contains_tolerates_defaults_and_extra_list_items_but_not_changes() -> None:
    desired = {"a": {"b": [{"name": "x", "v": 1}, {"name": "y"}]}, "c": "d"}
    assert contains(
        {"a": {"b": [{"name": "x", "v": 1, "default": 0}, {"name": "z"}, {"name": "y"}]}, "c": "d", "e": 1}, desired
    )
    assert not contains({"a": {"b": [{"name": "y"}, {"name": "x", "v": 1}]}, "c": "d"}, desired)
    assert not contains({"a": {"b": [{"name": "x", "v": 2}, {"name": "y"}]}, "c": "d"}, desired)
    assert not contains({"a": {"b": [{"name": "x", "v": 1}]}, "c": "d"}, desired)


def test_contains_wants_atomic_lists_exactly() -> None:
    """args, command and tolerations are replaced whole by an apply: an item added to them is drift."""
    tolerations: list[dict[str, str]] = [{"key": "k", "operator": "Exists"}]
    desired = {"args": ["-maxPods=100", "-setPreload=true"], "tolerations": tolerations}
    assert contains(
        {"args": ["-maxPods=100", "-setPreload=true"], "tolerations": [{"key": "k", "operator": "Exists"}]}, desired
    )
    assert not contains(
        {"args": ["-maxPods=100", "-setPreload=true", "-maxPods=1"], "tolerations": desired["tolerations"]}, desired
    )
    assert not contains({"args": desired["args"], "tolerations": [*tolerations, {"operator": "Exists"}]}, desired)
    assert not contains({"args": ["-maxPods=100"], "tolerations": desired["tolerations"]}, desired)


def test_apply_reason() -> None:
    desired = {"metadata": {"annotations": {names.APPLIED_HASH_ANNOTATION: "h1"}}, "spec": {"x": 1}}
    assert apply_reason(desired, None) == MISSING
    assert (
        apply_reason(desired, {"metadata": {"annotations": {names.APPLIED_HASH_ANNOTATION: "h0"}}, "spec": {"x": 1}})
        == CHANGED
    )
    assert (
        apply_reason(desired, {"metadata": {"annotations": {names.APPLIED_HASH_ANNOTATION: "h1"}}, "spec": {"x": 2}})
        == DRIFTED
    )
    assert (
        apply_reason(desired, {"metadata": {"annotations": {names.APPLIED_HASH_ANNOTATION: "h1"}}, "spec": {"x": 1}})
        is None
    )


def test_removal_and_orphan_detection() -> None:
    gate = names.onload_label("ns", "gone")
    nodes = {"a": {gate: "1", names.kmm_version_label("ns", "gone-module"): "1", "other": "x"}, "b": {"other": "x"}}
    [patch] = removal_patches("ns", "gone", views(nodes))
    assert patch.node == "a"
    assert set(patch.labels) == {gate, names.kmm_version_label("ns", "gone-module")}
    assert orphaned_gate_labels(nodes["a"], {("ns", "kept")}) == [("ns", "gone")]
    assert orphaned_gate_labels(nodes["a"], {("ns", "gone")}) == []
    assert orphaned_gate_labels({names.VERSION_LABEL: "1"}, set()) == []


def test_labels_under_the_prefix_without_the_kmm_label_are_not_orphans() -> None:
    assert orphaned_gate_labels({"onload.amd.com/team.a": "x"}, set()) == []


def test_node_events_wake_only_the_crs_concerned() -> None:
    selectors = {("ns", "a"): {"pool": "a"}, ("ns", "b"): {"pool": "b"}, ("other", "c"): {"pool": "a", "x": "1"}}
    assert crs_to_wake({"pool": "a"}, selectors) == [("ns", "a")]
    assert crs_to_wake({"pool": "a", "x": "1"}, selectors) == [("ns", "a"), ("other", "c")]
    leaving = {"pool": "c", names.onload_label("ns", "b"): "1"}
    assert crs_to_wake(leaving, selectors) == [("ns", "b")]
    assert crs_to_wake({"pool": "z"}, selectors) == []


def test_selector_keys_left_by_another_manager_on_a_module_are_drift() -> None:
    annotations = {names.APPLIED_HASH_ANNOTATION: "h"}
    desired = {"kind": "Module", "metadata": {"annotations": annotations}, "spec": {"selector": {"mine": ""}}}
    live = {"kind": "Module", "metadata": {"annotations": annotations}, "spec": {"selector": {"mine": "", "go": ""}}}
    assert stale_selector_keys(desired, live) == ["go"]
    assert apply_reason(desired, live) == DRIFTED
    assert stale_selector_keys(desired, {**live, "spec": {"selector": {"mine": ""}}}) == []
    daemonset = {**desired, "kind": "DaemonSet"}
    assert stale_selector_keys(daemonset, {**live, "kind": "DaemonSet"}) == []


def test_status_version_is_removed_once_no_node_runs_it() -> None:
    running = compute_status(
        Observation(1, selected=1, module_ready=1, device_plugin_ready=1, version="9.0"), None, NOW
    )
    assert running["version"] == "9.0"
    gone = compute_status(Observation(1, selected=0), running, NOW)
    assert "version" in gone
    assert gone["version"] is None, "null in the merge patch deletes the field"


def test_ready_names_the_nodes_that_hold_the_cr_back_and_why() -> None:
    waiting = compute_status(
        Observation(1, selected=5, module_ready=1, modules_pending=("w-0", "w-1", "w-2", "w-3")), None, NOW
    )
    ready = next(c for c in waiting["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "WaitingForKmm")
    assert "w-0, w-1, w-2 and 1 more" in ready["message"]
    plugin = compute_status(Observation(1, selected=2, module_ready=2, device_plugin_ready=1), None, NOW)
    ready = next(c for c in plugin["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "WaitingForDevicePlugin")
    assert "not ready on 1 selected node " in ready["message"]
    named = compute_status(
        Observation(1, selected=2, module_ready=2, device_plugin_ready=1, plugins_pending=("w-1",)), None, NOW
    )
    ready = next(c for c in named["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], "not ready on w-1 (" in ready["message"]) == ("WaitingForDevicePlugin", True)
    labelling = compute_status(
        Observation(1, selected=2, module_ready=2, device_plugin_ready=1, nodes_labelled=False), None, NOW
    )
    assert next(c for c in labelling["conditions"] if c["type"] == "Ready")["reason"] == "NodesNotReady"


def test_foreign_managers_are_those_owning_spec_fields_the_operator_does_not_set() -> None:
    desired: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": "plugin", "args": ["-x"]}]}}}}
    containers: dict[str, Any] = {'k:{"name":"plugin"}': {".": {}, "f:args": {}}}
    shared = {
        "manager": "kubectl-edit",
        "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": containers}}}},
    }
    status_writer = {"manager": "kube-controller-manager", "subresource": "status", "fieldsV1": {"f:status": {}}}
    live = {**copy.deepcopy(desired), "metadata": {"managedFields": [shared, status_writer]}}
    assert foreign_managers(desired, live) == []  # owns only what the operator sets too
    added = copy.deepcopy(containers)
    added['k:{"name":"sidecar"}'] = {".": {}}
    adder = {"manager": "kubectl-patch", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": added}}}}}
    live["metadata"]["managedFields"].append(adder)
    assert foreign_managers(desired, live) == ["kubectl-patch"]
