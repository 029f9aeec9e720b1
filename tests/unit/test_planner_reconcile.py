"""The reconcile planner: what a CR makes the operator write, and that a converged CR makes it write nothing."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from onload_operator.actions import ApplyChild, DeleteChild, PatchNode, PostEvent
from onload_operator.planner.checks import (
    INVALID_REGEXP,
    INVALID_SPEC,
    MISSING_USER_IMAGE,
    NAME_TOO_LONG,
    SELECTOR_CONFLICT,
)
from onload_operator.planner.compare import CHANGED, DRIFTED, MISSING
from onload_operator.planner.nodes import nodes_leaving, orphaned_gate_labels
from onload_operator.planner.reconcile import Plan
from onload_operator.planner.status import condition_of
from onload_operator.render import names
from tests.unit.onload_samples import NOW, SELECTOR, World, converge, cr_body, entry, views, worker_nodes


def conditions(status: Mapping[str, Any]) -> dict[str, tuple[object, object]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_first_plan_creates_children_and_version_labels_only() -> None:
    world = World(cr_body(), worker_nodes(3))
    result = world.plan()
    assert [(a.manifest["kind"], a.manifest["metadata"]["name"], a.reason) for a in result.of(ApplyChild)] == [
        ("Module", "onload-module", MISSING),
        ("DaemonSet", "onload-onload-device-plugin-ds", MISSING),
    ]
    version_key = names.kmm_version_label("ns", "onload-module")
    selector_key = names.module_selector_label("ns", "onload")
    assert [(p.node, dict(p.labels)) for p in result.of(PatchNode)] == [
        (f"worker-{i}", {selector_key: "", version_key: "8.1.2.26"}) for i in range(3)
    ]
    module = result.of(ApplyChild)[0].manifest
    assert module["spec"]["selector"] == {selector_key: ""}
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", "NodesNotReady")
    assert conditions(result.status)["Progressing"] == ("True", "RollingOut")
    assert [e.reason for e in result.of(PostEvent)] == ["NodesNotReady", "Created", "Created", "LoadingModules"]
    assert result.of(PostEvent)[-1].message == "KMM loads Onload 8.1.2.26 on 3 nodes: worker-0, worker-1, worker-2"


def test_gate_label_waits_for_kmm_to_report_the_module_loaded() -> None:
    world = World(cr_body(), worker_nodes(1))
    world.nodes["worker-0"][names.kmm_version_label("ns", "onload-module")] = "8.1.2.26"
    world.nodes["worker-0"][names.module_selector_label("ns", "onload")] = ""
    assert world.plan().of(PatchNode) == []
    world.nodes["worker-0"][names.kmm_ready_label("ns", "onload-module")] = ""
    [patch] = world.plan().of(PatchNode)
    assert dict(patch.labels) == {names.onload_label("ns", "onload"): "8.1.2.26"}


def test_sfc_label_follows_the_onload_label_and_gates_the_plugin() -> None:
    body = cr_body()
    body["spec"]["onload"]["kernelMappings"][0]["sfc"] = {}
    world = converge(World(body, worker_nodes(2)))
    labels = world.nodes["worker-0"]
    assert labels[names.kmm_version_label("ns", "onload-sfcmod")] == "8.1.2.26"
    assert labels[names.onload_label("ns", "onload")] == "8.1.2.26"
    assert ("Module", "onload-sfcmod") in world.children
    # Without the sfc module loaded the gate label is not set.
    fresh = World(body, worker_nodes(1))
    fresh.nodes["worker-0"][names.kmm_version_label("ns", "onload-module")] = "8.1.2.26"
    fresh.nodes["worker-0"][names.kmm_version_label("ns", "onload-sfcmod")] = "8.1.2.26"
    fresh.nodes["worker-0"][names.kmm_ready_label("ns", "onload-module")] = ""
    fresh.nodes["worker-0"][names.module_selector_label("ns", "onload")] = ""
    assert fresh.plan().of(PatchNode) == []


def test_converged_cr_is_ready_and_plans_no_write() -> None:
    world = converge(World(cr_body(), worker_nodes(3)))
    final = world.plans[-1]
    assert final.writes == 0
    assert final.of(ApplyChild) == []
    assert final.of(PatchNode) == []
    assert final.status is None
    assert final.of(PostEvent) == []
    status = world.body["status"]
    assert conditions(status) == {
        "Ready": ("True", "AllNodesReady"),
        "Progressing": ("False", "Complete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert status["nodes"] == {"selected": 3, "moduleReady": 3, "devicePluginReady": 3}
    assert status["observedGeneration"] == 1
    assert status["version"] == "8.1.2.26"


def test_child_edited_by_someone_else_is_reverted_and_deleted_child_recreated() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    ds = world.children[("DaemonSet", "onload-onload-device-plugin-ds")]
    ds["spec"]["template"]["spec"]["containers"][0]["args"] = ["-maxPods=1"]
    del world.children[("Module", "onload-module")]
    result = world.plan()
    assert sorted((a.manifest["kind"], a.reason) for a in result.of(ApplyChild)) == [
        ("DaemonSet", DRIFTED),
        ("Module", MISSING),
    ]
    assert [e.reason for e in result.of(PostEvent)] == ["NodesNotReady", "Created", "DriftRepaired"]


def test_fields_added_by_others_and_server_defaults_are_not_drift() -> None:
    world = converge(World(cr_body(), worker_nodes(1)))
    ds = world.children[("DaemonSet", "onload-onload-device-plugin-ds")]
    ds["metadata"]["labels"]["team"] = "network"
    ds["spec"]["revisionHistoryLimit"] = 10
    ds["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    assert world.plan().writes == 0


def test_safe_spec_changes_are_applied_at_once() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    world.body["spec"]["devicePlugin"] = {"maxPodsPerNode": 7, "imagePullPolicy": "Always"}
    world.body["spec"]["serviceAccountName"] = "other-sa"
    world.body["metadata"]["generation"] = 2
    result = world.plan()
    assert sorted((a.manifest["kind"], a.reason) for a in result.of(ApplyChild)) == [
        ("DaemonSet", CHANGED),
        ("Module", CHANGED),
    ]
    ds = next(a.manifest for a in result.of(ApplyChild) if a.manifest["kind"] == "DaemonSet")
    assert "-maxPods=7" in ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ds["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert result.of(PatchNode) == []


def test_version_change_on_running_nodes_waits_for_the_upgrade() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    before = copy.deepcopy(world.children)
    world.body["spec"]["onload"]["version"] = "9.0.0"
    world.body["spec"]["onload"]["userImage"] = "onload-user:9.0.0"
    world.body["spec"]["devicePlugin"] = {"maxPodsPerNode": 5}
    world.body["metadata"]["generation"] = 2
    result = world.plan()
    # Only the device-plugin settings change; the version, the user image and the labels stay.
    [apply] = result.of(ApplyChild)
    assert apply.manifest["kind"] == "DaemonSet"
    pod = apply.manifest["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "onload-user:8.1.2.26"
    assert apply.manifest["metadata"]["labels"][names.VERSION_LABEL] == "8.1.2.26"
    assert "-maxPods=5" in pod["containers"][0]["args"]
    assert result.of(PatchNode) == []
    assert result.status is not None
    assert conditions(result.status)["Progressing"] == ("True", "UpgradePending")
    assert conditions(result.status)["Ready"] == ("True", "AllNodesReady")
    assert world.children[("Module", "onload-module")] == before[("Module", "onload-module")]


def test_version_change_before_any_node_runs_onload_is_taken_directly() -> None:
    world = World(cr_body(), worker_nodes(1))
    for apply in world.plan().of(ApplyChild):  # children exist, no node labelled yet
        world.children[(apply.manifest["kind"], apply.manifest["metadata"]["name"])] = apply.manifest
    world.body["spec"]["onload"]["version"] = "9.0.0"
    result = world.plan()
    module = next(a.manifest for a in result.of(ApplyChild) if a.manifest["kind"] == "Module")
    assert module["spec"]["moduleLoader"]["container"]["version"] == "9.0.0"


def test_node_that_stops_matching_loses_the_plugin_before_the_modules() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    gate = names.onload_label("ns", "onload")
    ready = names.kmm_ready_label("ns", "onload-module")
    del world.nodes["worker-1"]["node-role.kubernetes.io/worker"]
    result = world.plan()
    [patch] = result.of(PatchNode)
    assert patch.node == "worker-1"
    assert dict(patch.labels) == {gate: None}
    assert [(e.reason, e.message.endswith("1 nodes: worker-1")) for e in result.of(PostEvent)] == [
        ("StoppingDevicePlugin", True)
    ]
    world.carry_out(result)
    # The device plugin stops there while KMM keeps the module loaded under it.
    assert gate not in world.nodes["worker-1"]
    assert ready in world.nodes["worker-1"]
    assert nodes_leaving("ns", "onload", SELECTOR, views(world.nodes)) == ["worker-1"]
    assert world.plan().of(PatchNode) == []  # device-plugin pods unknown: keep the modules
    assert world.plan(device_plugin_nodes=frozenset({"worker-0", "worker-1"})).of(PatchNode) == []
    result = world.plan(device_plugin_nodes=frozenset({"worker-0"}))
    [patch] = result.of(PatchNode)
    assert dict(patch.labels) == {
        names.kmm_version_label("ns", "onload-module"): None,
        names.module_selector_label("ns", "onload"): None,
    }
    assert [e.reason for e in result.of(PostEvent)] == ["UnloadingModules"]
    world.carry_out(result)
    assert ready not in world.nodes["worker-1"]
    assert ready in world.nodes["worker-0"]


def test_selector_edit_changes_no_module_and_unloads_only_after_the_plugin() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    world.nodes["worker-0"]["pool"] = "b"
    world.body["spec"]["selector"] = {"pool": "b"}
    world.body["metadata"]["generation"] = 2
    result = world.plan()
    assert [a.manifest["kind"] for a in result.of(ApplyChild)] == ["DaemonSet"]  # its nodeSelector, not the Modules
    assert [(p.node, dict(p.labels)) for p in result.of(PatchNode)] == [
        ("worker-1", {names.onload_label("ns", "onload"): None})
    ]
    world.carry_out(result)
    assert names.kmm_ready_label("ns", "onload-module") in world.nodes["worker-1"]


def _go_operator_cluster(nodes: int) -> World:
    """A converged CR as the Go operator left it: Modules select spec.selector, no Module selector label."""
    world = converge(World(cr_body(), worker_nodes(nodes)))
    for child in world.children.values():
        del child["metadata"]["annotations"]
    world.children[("Module", "onload-module")]["spec"]["selector"] = dict(SELECTOR)
    for labels in world.nodes.values():
        del labels[names.module_selector_label("ns", "onload")]
    return world


def test_takeover_labels_the_nodes_before_the_modules_select_the_label() -> None:
    world = _go_operator_cluster(2)
    ready = names.kmm_ready_label("ns", "onload-module")
    selector_key = names.module_selector_label("ns", "onload")
    result = world.plan()
    assert [(p.node, dict(p.labels)) for p in result.of(PatchNode)] == [
        ("worker-0", {selector_key: ""}),
        ("worker-1", {selector_key: ""}),
    ]
    assert "Module" not in [a.manifest["kind"] for a in result.of(ApplyChild)]
    world.carry_out(result)
    assert all(ready in labels for labels in world.nodes.values())
    result = world.plan()
    assert [a.manifest["kind"] for a in result.of(ApplyChild)] == ["Module"]
    assert result.of(PatchNode) == []
    world.carry_out(result)
    assert world.children[("Module", "onload-module")]["spec"]["selector"] == {selector_key: ""}
    assert all(ready in labels for labels in world.nodes.values())
    assert converge(world).plans[-1].writes == 0


def test_takeover_interrupted_after_some_node_patches_still_waits_for_the_rest() -> None:
    world = _go_operator_cluster(3)
    selector_key = names.module_selector_label("ns", "onload")
    result = world.plan()
    world.nodes["worker-0"][selector_key] = ""  # only the first node patch was made
    result = world.plan()
    assert "Module" not in [a.manifest["kind"] for a in result.of(ApplyChild)]
    assert [p.node for p in result.of(PatchNode)] == ["worker-1", "worker-2"]


def test_takeover_of_a_node_whose_plugin_is_stopping_keeps_its_modules() -> None:
    world = _go_operator_cluster(2)
    selector_key = names.module_selector_label("ns", "onload")
    del world.nodes["worker-1"]["node-role.kubernetes.io/worker"]
    result = world.plan()
    assert dict(result.of(PatchNode)[1].labels) == {names.onload_label("ns", "onload"): None, selector_key: ""}
    assert "Module" not in [a.manifest["kind"] for a in result.of(ApplyChild)]


def _refused(body: dict[str, object], reason: str, **kwargs: object) -> None:
    world = World(body, worker_nodes(2))
    result = world.plan(**kwargs)
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == []
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", reason)
    assert conditions(result.status)["Degraded"] == ("True", reason)
    assert [(e.type, e.reason) for e in result.of(PostEvent)] == [("Warning", reason)]


def test_bad_input_is_reported_and_changes_nothing() -> None:
    _refused(cr_body(name="n" * 20, namespace="s" * 13), NAME_TOO_LONG)
    bad_regexp = cr_body()
    bad_regexp["spec"]["onload"]["kernelMappings"][0]["regexp"] = "^(?=5)"
    _refused(bad_regexp, INVALID_REGEXP)
    no_image = cr_body()
    del no_image["spec"]["onload"]["userImage"]
    _refused(no_image, MISSING_USER_IMAGE)
    _refused(cr_body(selector={}), INVALID_SPEC)


def test_bad_input_on_a_running_cr_keeps_its_children_and_labels() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    world.body["spec"]["onload"]["kernelMappings"][0]["regexp"] = "("
    del world.nodes["worker-1"]["node-role.kubernetes.io/worker"]
    result = world.plan()
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == []
    # The status still tells what keeps running while the spec is refused.
    assert result.status is not None
    assert result.status["nodes"]["moduleReady"] == 2
    assert result.status["nodes"]["devicePluginReady"] == 2
    assert result.status["version"] == "8.1.2.26"
    fixed = converge(World(cr_body(), world.nodes, world.children))
    assert conditions(fixed.body["status"])["Ready"] == ("True", "AllNodesReady")


def test_later_cr_selecting_the_same_nodes_is_refused() -> None:
    first = cr_body(name="first")
    second = cr_body(name="second")
    second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    onloads = [entry(first), entry(second)]
    world = World(second, worker_nodes(5))
    result = world.plan(onloads=onloads)
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == []
    assert result.status is not None
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == SELECTOR_CONFLICT
    assert "ns/first" in ready["message"]
    assert "worker-0, worker-1, worker-2 and 2 more" in ready["message"]
    assert World(first, worker_nodes(5)).plan(onloads=onloads).of(ApplyChild)  # the earlier CR is unaffected
    disjoint = cr_body(name="second", selector={"pool": "b"})
    disjoint["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    nodes = {**worker_nodes(2), "b-0": {"pool": "b"}}
    assert World(disjoint, nodes).plan(onloads=[entry(first), entry(disjoint)]).of(ApplyChild)


def _two_pools() -> tuple[World, World]:
    """CR ``first`` (created first) converged on pool a (worker-0, worker-1), CR ``second`` on pool b (worker-2)."""
    nodes = worker_nodes(3)
    for node, pool in (("worker-0", "a"), ("worker-1", "a"), ("worker-2", "b")):
        nodes[node]["pool"] = pool
    first = cr_body(name="first", selector={"pool": "a"})
    second = cr_body(name="second", selector={"pool": "b"})
    second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    return (
        converge(World(first, nodes, others=[second])),
        converge(World(second, nodes, others=[first])),
    )


def _assert_conflict(result: Plan, *phrases: str) -> None:
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == []
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", SELECTOR_CONFLICT)
    assert conditions(result.status)["Degraded"] == ("True", SELECTOR_CONFLICT)
    assert [(e.type, e.reason) for e in result.of(PostEvent)] == [("Warning", SELECTOR_CONFLICT)]
    message = next(c["message"] for c in result.status["conditions"] if c["type"] == "Ready")
    for phrase in phrases:
        assert phrase in message


def test_older_cr_edited_over_nodes_where_a_newer_one_runs_is_refused() -> None:
    first, second = _two_pools()
    first.body["spec"]["selector"] = dict(SELECTOR)  # now also selects worker-2, where second runs
    first.body["metadata"]["generation"] = 2
    _assert_conflict(first.plan(), "Onload ns/second runs on worker-2")
    assert second.plan().writes == 0  # the newer CR keeps its node and stays Ready
    assert conditions(second.body["status"])["Ready"] == ("True", "AllNodesReady")


def test_newer_cr_over_nodes_where_an_older_one_runs_is_refused() -> None:
    first, second = _two_pools()
    second.body["spec"]["selector"] = dict(SELECTOR)  # now also selects worker-0 and worker-1
    second.body["metadata"]["generation"] = 2
    _assert_conflict(second.plan(), "Onload ns/first runs on worker-0, worker-1")
    assert first.plan().writes == 0
    third = cr_body(name="third")
    third["metadata"]["creationTimestamp"] = "2026-01-03T00:00:00Z"
    brand_new = World(third, first.nodes, others=[first.body, second.body])
    _assert_conflict(
        brand_new.plan(), "Onload ns/first runs on worker-0, worker-1", "Onload ns/second runs on worker-2"
    )


def test_node_released_by_another_cr_is_taken_once_its_labels_are_gone() -> None:
    first, second = _two_pools()
    second.body["spec"]["selector"] = {"pool": "none"}
    first.body["spec"]["selector"] = dict(SELECTOR)
    # While second stops its device plugin and unloads its modules, worker-2 still belongs to it.
    _assert_conflict(first.plan(), "Onload ns/second runs on worker-2")
    second.carry_out(second.plan())
    second.carry_out(second.plan(device_plugin_nodes=frozenset()))
    assert not any(key.endswith("second") or "second-" in key for key in first.nodes["worker-2"])
    result = first.plan()
    assert [p.node for p in result.of(PatchNode)] == ["worker-2"]


def test_node_carrying_the_labels_of_both_crs_stays_with_the_earlier_one() -> None:
    first, second = _two_pools()
    for key, value in first.nodes["worker-0"].items():
        if "first" in key:
            first.nodes["worker-2"][key] = value
    first.body["spec"]["selector"] = dict(SELECTOR)
    second.body["spec"]["selector"] = dict(SELECTOR)
    _assert_conflict(second.plan(), "Onload ns/first runs on worker-0, worker-1, worker-2")
    result = first.plan()
    assert result.status is None or conditions(result.status)["Ready"][1] != SELECTOR_CONFLICT


def test_no_node_selected_is_not_ready_with_its_own_reason() -> None:
    result = World(cr_body(selector={"pool": "none"}), worker_nodes(2)).plan()
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", "NoNodesSelected")


def test_repeated_failures_report_degraded() -> None:
    world = converge(World(cr_body(), worker_nodes(1)))
    result = world.plan(recent_errors=["API error 500 Internal Server Error"])
    assert result.status is not None
    assert conditions(result.status)["Degraded"] == ("True", "ReconcileError")
    assert conditions(result.status)["Ready"] == ("True", "AllNodesReady")
    assert NOW in {c["lastTransitionTime"] for c in result.status["conditions"]}


def test_children_of_the_go_operator_are_taken_over_without_disruption() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    for child in world.children.values():  # the Go operator wrote no annotations
        del child["metadata"]["annotations"]
    world.body["spec"]["onload"]["version"] = "9.0.0"
    world.body["spec"]["onload"]["userImage"] = "onload-user:9.0.0"
    result = world.plan()
    assert result.of(PatchNode) == []
    rendered = {a.manifest["kind"]: a.manifest for a in result.of(ApplyChild)}
    assert rendered["Module"]["spec"]["moduleLoader"]["container"]["version"] == "8.1.2.26"
    init = rendered["DaemonSet"]["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == "onload-user:8.1.2.26"
    assert result.status is not None
    assert conditions(result.status)["Progressing"] == ("True", "UpgradePending")


def test_module_selector_label_of_a_deleted_cr_is_an_orphan_and_alone_needs_no_plugin_check() -> None:
    leftover = {
        names.module_selector_label("old", "gone"): "",
        names.kmm_version_label("old", "gone-module"): "1",
        names.module_selector_label("old", "kept"): "",  # no version label: not recognised as Onload's
    }
    assert orphaned_gate_labels(leftover, existing=set()) == [("old", "gone")]
    assert orphaned_gate_labels(leftover, existing={("old", "gone")}) == []
    world = World(cr_body(), {"worker-0": {names.module_selector_label("ns", "onload"): ""}})
    [patch] = world.plan().of(PatchNode)  # nothing can be loaded there without a version label
    assert dict(patch.labels) == {names.module_selector_label("ns", "onload"): None}


def test_daemonset_with_another_selector_is_deleted_pods_first_then_created_again() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    key = ("DaemonSet", names.device_plugin_name("onload"))
    live = world.children[key]
    live["metadata"]["uid"] = "uid-of-v3.0"
    live["spec"]["selector"] = {"matchLabels": {names.NAME_LABEL: key[1]}}  # the Go operator v3.0's selector
    result = world.plan()
    assert result.of(DeleteChild) == [DeleteChild("DaemonSet", key[1], "uid-of-v3.0")]
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == [], "the nodes keep Onload loaded meanwhile"
    assert result.status is not None
    progressing = condition_of(result.status, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Recreating")
    assert f'spec.selector is {{"matchLabels": {{"{names.NAME_LABEL}": "{key[1]}"}}}}' in progressing["message"]
    assert [e.reason for e in result.of(PostEvent)] == ["NodesNotReady", "Recreating"]
    world.body["status"] = result.status
    # While its pods are deleted (foreground), nothing is applied to it and no second delete is sent.
    live["metadata"]["deletionTimestamp"] = NOW
    waiting = world.plan()
    assert (waiting.of(DeleteChild), waiting.of(ApplyChild), waiting.of(PatchNode)) == ([], [], [])
    assert conditions(waiting.status or world.body["status"])["Progressing"] == ("True", "Recreating")
    del world.children[key]
    again = world.plan()
    assert [(a.manifest["kind"], a.reason) for a in again.of(ApplyChild)] == [("DaemonSet", MISSING)]
    assert again.of(DeleteChild) == []


def test_v3_0_takeover_with_a_new_version_keeps_what_the_nodes_run() -> None:
    """The v3.0 DaemonSet goes only once the onload Module records the deployed Onload, else the new version would
    be rendered onto running nodes."""
    world = _go_operator_cluster(2)
    key = ("DaemonSet", names.device_plugin_name("onload"))
    world.children[key]["metadata"]["uid"] = "uid-of-v3.0"
    world.children[key]["spec"]["selector"] = {"matchLabels": {names.NAME_LABEL: key[1]}}
    world.body["spec"]["onload"].update(version="9.0.0", userImage="onload-user:9.0.0")
    first = world.plan()
    assert first.of(DeleteChild) == [], "the Modules are not taken over yet"
    assert first.status is not None
    assert "deleted once the Modules are taken over" in condition_of(first.status, "Progressing")["message"]
    converge(world)
    recreated = [p for p in world.plans if p.of(DeleteChild)]
    assert len(recreated) == 1
    module = world.children[("Module", "onload-module")]
    assert module["spec"]["moduleLoader"]["container"]["version"] == "8.1.2.26"
    ds = world.children[key]
    assert ds["spec"]["template"]["spec"]["initContainers"][0]["image"] == "onload-user:8.1.2.26"
    assert names.MANAGED_BY_LABEL in ds["spec"]["selector"]["matchLabels"]
    assert conditions(world.body["status"])["Progressing"] == ("True", "UpgradePending")
