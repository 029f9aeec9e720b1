"""Taking over the Go operator's children and labels without disrupting what the nodes run."""

from __future__ import annotations

from onload_operator.actions import ApplyChild, DeleteChild, PatchNode, PostEvent
from onload_operator.planner.compare import MISSING
from onload_operator.planner.status import condition_of
from onload_operator.render import names
from tests.unit.onload_samples import NOW, SELECTOR, World, conditions, converge, cr_body, worker_nodes

LEGACY_DS = ("DaemonSet", names.device_plugin_name("onload"))


def _single_daemonset(world: World, *, selector_by_name_only: bool = False) -> dict[str, object]:
    """Replace the revision's DaemonSet by the single one of earlier operators, and return it."""
    live = world.children.pop(("DaemonSet", names.device_plugin_revision_name("onload", "8.1.2.26")))
    live["metadata"]["name"] = LEGACY_DS[1]
    live["metadata"]["uid"] = "uid-of-the-old-daemonset"
    del live["metadata"]["labels"][names.REVISION_LABEL]
    pod_labels = {**live["spec"]["selector"]["matchLabels"], names.NAME_LABEL: LEGACY_DS[1]}
    live["spec"]["selector"] = {
        "matchLabels": {names.NAME_LABEL: LEGACY_DS[1]} if selector_by_name_only else pod_labels
    }
    world.children[LEGACY_DS] = live
    return live


def _go_operator_cluster(nodes: int) -> World:
    """A converged CR as the Go operator left it: one DaemonSet, Modules select spec.selector, no Module selector
    label, no annotations."""
    world = converge(World(cr_body(), worker_nodes(nodes)))
    _single_daemonset(world, selector_by_name_only=True)
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


def test_a_version_change_found_at_takeover_moves_no_node_before_the_module_records_the_revisions() -> None:
    world = _go_operator_cluster(2)
    world.body["spec"]["onload"].update(version="9.0.0", userImage="onload-user:9.0.0")
    taken_after: list[bool] = []
    for _round in range(8):
        result = world.plan()
        module = world.children[("Module", "onload-module")]
        recorded = names.REVISIONS_ANNOTATION in (module["metadata"].get("annotations") or {})
        if any(p.taints is not None for p in result.of(PatchNode)):
            taken_after.append(recorded)
        world.carry_out(result)
    assert taken_after == [True], "a node is taken once, after the Module records the revisions"
    registry = world.children[("Module", "onload-module")]["metadata"]["annotations"][names.REVISIONS_ANNOTATION]
    assert '"8.1.2.26"' in registry
    assert "onload-user:8.1.2.26" in registry, "what the Go operator's DaemonSet ran is kept"
    assert LEGACY_DS not in world.children
    worker_1 = world.nodes["worker-1"]
    assert worker_1[names.onload_label("ns", "onload")] == "8.1.2.26"
    old = world.children[("DaemonSet", names.device_plugin_revision_name("onload", "8.1.2.26"))]
    assert old["spec"]["template"]["spec"]["initContainers"][0]["image"] == "onload-user:8.1.2.26"


def test_the_single_daemonset_of_an_earlier_operator_goes_pods_first_then_the_revisions_come() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    _single_daemonset(world)
    module = world.children[("Module", "onload-module")]
    del module["metadata"]["annotations"][names.REVISIONS_ANNOTATION]  # as the first release left it
    first = world.plan()
    assert first.of(DeleteChild) == []
    assert [a.manifest["kind"] for a in first.of(ApplyChild)] == ["Module"], "no second plugin next to the old"
    assert first.status is not None
    assert "deleted once the Modules record the revisions" in condition_of(first.status, "Progressing")["message"]
    world.carry_out(first)
    result = world.plan()
    assert result.of(DeleteChild) == [DeleteChild("DaemonSet", LEGACY_DS[1], "uid-of-the-old-daemonset")]
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == [], "the nodes keep Onload loaded meanwhile"
    assert result.status is not None
    progressing = condition_of(result.status, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Recreating")
    assert "Recreating" in [e.reason for e in result.of(PostEvent)]
    world.body["status"] = result.status
    # While its pods are deleted (foreground), nothing is created beside it and no second delete is sent.
    world.children[LEGACY_DS]["metadata"]["deletionTimestamp"] = NOW
    waiting = world.plan()
    assert (waiting.of(DeleteChild), waiting.of(ApplyChild), waiting.of(PatchNode)) == ([], [], [])
    assert conditions(waiting.status or world.body["status"])["Progressing"] == ("True", "Recreating")
    del world.children[LEGACY_DS]
    again = world.plan()
    assert [(a.manifest["metadata"]["name"], a.reason) for a in again.of(ApplyChild)] == [
        (names.device_plugin_revision_name("onload", "8.1.2.26"), MISSING)
    ]
    assert again.of(DeleteChild) == []
    assert converge(world).plans[-1].writes == 0
