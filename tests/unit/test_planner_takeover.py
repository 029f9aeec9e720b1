"""Taking over the Go operator's children and labels without disrupting what the nodes run."""

from __future__ import annotations

from onload_operator.actions import ApplyChild, DeleteChild, PatchNode, PostEvent
from onload_operator.planner.compare import MISSING
from onload_operator.planner.status import condition_of
from onload_operator.render import names
from tests.unit.onload_samples import NOW, SELECTOR, World, conditions, converge, cr_body, worker_nodes


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
