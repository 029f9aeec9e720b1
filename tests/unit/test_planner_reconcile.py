"""The reconcile planner: what a CR makes the operator write, and that a converged CR makes it write nothing."""

from __future__ import annotations

import copy

import pytest

from onload_operator.actions import ApplyChild, PatchNode, PatchStatus, PostEvent
from onload_operator.planner.checks import (
    DEVICE_PLUGIN_REPOSITORY,
    INVALID_REGEXP,
    INVALID_SPEC,
    MISSING_USER_IMAGE,
    NAME_TOO_LONG,
    UNSUPPORTED_IMAGE,
    Problem,
)
from onload_operator.planner.compare import CHANGED, DRIFTED, MISSING
from onload_operator.planner.reconcile import failure_plan, plan
from onload_operator.planner.snapshot import LastApplied
from onload_operator.render import names
from tests.unit.onload_samples import LATER, NOW, World, conditions, converge, cr_body, snapshot, worker_nodes

DS = names.device_plugin_revision_name("onload", "8.1.2.26")


def test_first_plan_creates_children_and_version_labels_only() -> None:
    world = World(cr_body(), worker_nodes(3))
    result = world.plan()
    assert [(a.manifest["kind"], a.manifest["metadata"]["name"], a.reason) for a in result.of(ApplyChild)] == [
        ("Module", "onload-module", MISSING),
        ("DaemonSet", DS, MISSING),
    ]
    version_key = names.kmm_version_label("ns", "onload-module")
    selector_key = names.module_selector_label("ns", "onload")
    assert [(p.node, dict(p.labels)) for p in result.of(PatchNode)] == [
        (f"worker-{i}", {selector_key: "", version_key: "8.1.2.26"}) for i in range(3)
    ]
    module = result.of(ApplyChild)[0].manifest
    assert module["spec"]["selector"] == {selector_key: ""}
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", "WaitingForKmm")
    assert conditions(result.status)["Progressing"] == ("True", "Applying")  # until the children are seen written
    assert [e.reason for e in result.of(PostEvent)] == ["WaitingForKmm", "Created", "Created", "LoadingModules"]
    assert result.of(PostEvent)[-1].message == "KMM loads Onload 8.1.2.26 on 3 nodes: worker-0, worker-1, worker-2"


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
    ds = world.children[("DaemonSet", DS)]
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
    ds = world.children[("DaemonSet", DS)]
    ds["metadata"]["labels"]["team"] = "network"
    ds["spec"]["revisionHistoryLimit"] = 10
    ds["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    assert world.plan().writes == 0


def test_safe_spec_changes_are_applied_at_once() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    world.body["spec"]["serviceAccountName"] = "other-sa"
    world.body["spec"]["imagePullSecrets"] = [{"name": "pull"}]
    world.body["metadata"]["generation"] = 2
    result = world.plan()
    assert sorted((a.manifest["kind"], a.reason) for a in result.of(ApplyChild)) == [
        ("DaemonSet", CHANGED),
        ("Module", CHANGED),
    ]
    ds = next(a.manifest for a in result.of(ApplyChild) if a.manifest["kind"] == "DaemonSet")
    assert ds["metadata"]["name"] == DS
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == "other-sa"
    assert result.of(PatchNode) == []


def test_a_change_of_what_nodes_run_starts_a_rollout_and_keeps_the_old_daemonset() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    before = copy.deepcopy(world.children[("DaemonSet", DS)])
    world.body["spec"]["onload"]["version"] = "9.0.0"
    world.body["spec"]["onload"]["userImage"] = "onload-user:9.0.0"
    world.body["metadata"]["generation"] = 2
    result = world.plan()
    applied = {(a.manifest["kind"], a.manifest["metadata"]["name"]): a for a in result.of(ApplyChild)}
    new_ds = names.device_plugin_revision_name("onload", "9.0.0")
    assert set(applied) == {("Module", "onload-module"), ("DaemonSet", new_ds)}
    module = applied[("Module", "onload-module")].manifest
    assert module["spec"]["moduleLoader"]["container"]["version"] == "9.0.0"
    registry = module["metadata"]["annotations"][names.REVISIONS_ANNOTATION]
    assert '"8.1.2.26"' in registry
    assert '"9.0.0"' in registry
    pod = applied[("DaemonSet", new_ds)].manifest["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "onload-user:9.0.0"
    assert result.of(PatchNode) == [], "no node moves before the Module records the revisions"
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", "Upgrading")
    assert conditions(result.status)["Progressing"] == ("True", "Upgrading")
    assert conditions(result.status)["Upgrading"] == ("True", "Progressing")
    assert result.status["upgrade"]["from"] == "8.1.2.26"
    assert result.status["upgrade"]["to"] == "9.0.0"
    assert result.status["version"] == "8.1.2.26"
    world.carry_out(result)
    after = world.children[("DaemonSet", DS)]
    assert after["spec"] == before["spec"]  # the nodes not upgraded keep their device plugin
    [taken] = [p for p in world.plan().of(PatchNode) if p.taints is not None]
    assert taken.node == "worker-0"
    assert taken.labels == {names.onload_label("ns", "onload"): None}


def test_device_plugin_settings_are_a_revision_of_their_own() -> None:
    world = converge(World(cr_body(), worker_nodes(1)))
    world.body["spec"]["devicePlugin"] = {"maxPodsPerNode": 7}
    result = world.plan()
    new = [a.manifest for a in result.of(ApplyChild) if a.manifest["kind"] == "DaemonSet"]
    assert len(new) == 1
    name = new[0]["metadata"]["name"]
    assert name.startswith("onload-onload-dp-8.1.2.26-")
    assert "-maxPods=7" in new[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    world.carry_out(result)
    assert [p.node for p in world.plan().of(PatchNode) if p.taints is not None] == ["worker-0"]


def test_a_kernel_mapping_for_a_kernel_no_node_runs_is_applied_in_place() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    mappings = world.body["spec"]["onload"]["kernelMappings"]
    mappings.append({"regexp": "^6\\.99\\.", "kernelModuleImage": "onload-module:other"})
    result = world.plan()
    [apply] = result.of(ApplyChild)
    assert apply.manifest["kind"] == "Module"
    assert apply.manifest["spec"]["moduleLoader"]["container"]["version"] == "8.1.2.26"
    assert len(apply.manifest["spec"]["moduleLoader"]["container"]["kernelMappings"]) == 2
    assert result.of(PatchNode) == []
    assert result.status is None or "upgrade" not in result.status


def test_version_change_before_any_node_runs_onload_is_taken_directly() -> None:
    world = World(cr_body(), worker_nodes(1))
    for apply in world.plan().of(ApplyChild):  # children exist, no node labelled yet
        world.children[(apply.manifest["kind"], apply.manifest["metadata"]["name"])] = apply.manifest
    world.body["spec"]["onload"]["version"] = "9.0.0"
    result = world.plan()
    module = next(a.manifest for a in result.of(ApplyChild) if a.manifest["kind"] == "Module")
    assert module["spec"]["moduleLoader"]["container"]["version"] == "9.0.0"


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


def test_no_node_selected_is_not_ready_with_its_own_reason() -> None:
    result = World(cr_body(selector={"pool": "none"}), worker_nodes(2)).plan()
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", "NoNodesSelected")


def test_repeated_failures_report_degraded() -> None:
    world = converge(World(cr_body(), worker_nodes(1)))
    result = world.plan(recent_errors=[Problem("ReconcileError", "API error 500 Internal Server Error")])
    assert result.status is not None
    assert conditions(result.status)["Degraded"] == ("True", "ReconcileError")
    assert conditions(result.status)["Ready"] == ("True", "AllNodesReady")
    assert NOW in {c["lastTransitionTime"] for c in result.status["conditions"]}


def test_a_failure_is_reported_from_the_last_observation_without_planning_again() -> None:
    world = converge(World(cr_body(), worker_nodes(1)))
    observation = world.plans[-1].observation
    report = failure_plan(
        world.body, observation, Problem("ReconcileError", "API error 500 Internal Server Error"), LATER
    )
    # Ready keeps its reason, so no Event: only the status, whatever the plan of the failed pass held.
    assert [type(action) for action in report.actions] == [PatchStatus]
    assert report.status is not None
    assert conditions(report.status)["Degraded"] == ("True", "ReconcileError")
    assert conditions(report.status)["Ready"] == ("True", "AllNodesReady")
    world.body["status"] = dict(report.status)
    assert (
        failure_plan(
            world.body, observation, Problem("ReconcileError", "API error 500 Internal Server Error"), LATER
        ).actions
        == ()
    )


def test_actions_run_children_first_then_nodes_status_and_events() -> None:
    result = World(cr_body(), worker_nodes(2)).plan()
    kinds = [type(action).__name__ for action in result.actions]
    assert kinds == ["ApplyChild", "ApplyChild", "PatchNode", "PatchNode", "PatchStatus"] + ["PostEvent"] * 4


def test_a_child_still_as_last_applied_is_not_applied_again_although_it_looks_drifted() -> None:
    world = converge(World(cr_body(), worker_nodes(1)))
    key = ("DaemonSet", DS)
    ds = world.children[key]
    ds["spec"]["template"]["spec"]["containers"][0]["args"] = ["normalised-by-the-server"]
    ds["metadata"]["resourceVersion"] = "42"
    assert [a.reason for a in world.plan().of(ApplyChild)] == [DRIFTED]
    applied = LastApplied(ds["metadata"]["annotations"][names.APPLIED_HASH_ANNOTATION], "42")
    assert world.plan(last_applied={key: applied}).of(ApplyChild) == []
    assert world.plan(last_applied={key: applied._replace(resource_version="43")}).of(ApplyChild) != []


def test_a_generation_is_never_complete_before_its_child_writes_are_seen() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    world.body["spec"]["serviceAccountName"] = "another-account"
    world.body["metadata"]["generation"] = 2
    result = world.plan()
    assert [a.manifest["kind"] for a in result.of(ApplyChild)] == ["Module", "DaemonSet"]
    assert result.status is not None
    assert result.status["observedGeneration"] == 2
    assert conditions(result.status)["Progressing"] == ("True", "Applying")
    world.carry_out(result)
    ds = world.children[("DaemonSet", DS)]
    ds["metadata"]["generation"] = 2
    ds["status"]["observedGeneration"] = 1  # the DaemonSet controller has not seen the new template yet
    result = world.plan()
    assert result.of(ApplyChild) == []
    world.carry_out(result)
    assert conditions(world.body["status"])["Progressing"] == ("True", "Applying")
    ds["status"].update(observedGeneration=2, updatedNumberScheduled=0)  # seen: OnDelete keeps the old pods
    world.carry_out(world.plan())
    assert conditions(world.body["status"])["Progressing"] == ("True", "DevicePluginRestartPending")


@pytest.mark.parametrize(
    ("image", "refused"),
    [
        ("docker.io/onload/onload-device-plugin:3.0.0", True),
        ("onload/onload-device-plugin:3.0.0", True),
        ("index.docker.io/onload/onload-device-plugin@sha256:" + "a" * 64, True),
        ("docker.io/onload/onload-device-plugin-py:0.1.0", False),
        ("registry.example.com/onload/onload-device-plugin:3.0.0", False),
    ],
)
def test_the_go_device_plugin_image_is_refused_naming_the_image_to_use(image: str, refused: bool) -> None:
    """The Go plugin and worker exit on this operator's flags: rather than a crash-looping DaemonSet, the CR says
    which image to set."""
    world = World(cr_body(), worker_nodes(2))
    result = plan(snapshot(world.body, world.nodes), image, NOW)
    assert result.status is not None
    ready = conditions(result.status)["Ready"]
    if refused:
        assert ready == ("False", UNSUPPORTED_IMAGE)
        assert result.of(ApplyChild) == []
        assert result.of(PatchNode) == []
        message = next(c["message"] for c in result.status["conditions"] if c["type"] == "Ready")
        assert DEVICE_PLUGIN_REPOSITORY in message
        assert image in message
    else:
        assert ready[1] != UNSUPPORTED_IMAGE
        assert result.of(ApplyChild)


def test_node_labels_edited_by_hand_are_repaired_and_ready_waits_for_them() -> None:
    gate = names.onload_label("ns", "onload")
    world = converge(World(cr_body(), worker_nodes(2)))
    world.nodes["worker-0"][gate] = "9.9.9"  # the device plugin of 8.1.2.26 no longer runs there
    result = world.plan()
    assert [(p.node, dict(p.labels)) for p in result.of(PatchNode)] == [("worker-0", {gate: "8.1.2.26"})]
    assert result.status is not None
    assert conditions(result.status)["Ready"][0] == "False"
    world.carry_out(result)
    converge(world)
    assert world.body["status"]["conditions"][0]["reason"] == "AllNodesReady"
