"""The node-label protocol: the gate waits for KMM, leaving nodes lose the plugin before the modules."""

from __future__ import annotations

from onload_operator.actions import ApplyChild, PatchNode, PostEvent
from onload_operator.observed import NodeView
from onload_operator.planner.nodes import (
    NodeFacts,
    joining_changes,
    leaving_changes,
    nodes_leaving,
    orphaned_gate_labels,
    plan_node_labels,
)
from onload_operator.render import names
from tests.unit.onload_samples import SELECTOR, World, converge, cr_body, views, worker_nodes


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


def test_joining_rows_apply_together_and_leaving_rows_first_match() -> None:
    onload_key = names.kmm_version_label("ns", "onload-module")
    facts = NodeFacts({}, "ns", "onload", "9.0", uses_sfc=True, plugin_gone=False)
    assert joining_changes(facts) == {
        names.module_selector_label("ns", "onload"): "",
        onload_key: "9.0",
        names.kmm_version_label("ns", "onload-sfcmod"): "9.0",
    }
    gated = NodeFacts(
        {names.onload_label("ns", "onload"): "9.0", onload_key: "9.0"}, "ns", "onload", "9.0", False, True
    )
    # The device plugin stops first, although no pod of it is left: the modules go only in a later step.
    assert leaving_changes(gated) == {
        names.onload_label("ns", "onload"): None,
        names.module_selector_label("ns", "onload"): "",
    }
    assert leaving_changes(NodeFacts({"other": "x"}, "ns", "onload", "9.0", False, True)) == {}


def test_a_node_under_upgrade_is_counted_but_its_labels_belong_to_the_upgrade() -> None:
    world = converge(World(cr_body(), worker_nodes(2)))
    nodes = views(world.nodes)
    nodes["worker-1"] = NodeView("worker-1", labels={}, annotations={names.UPGRADE_ANNOTATION: "evicting"})
    nodes["worker-0"] = NodeView("worker-0", labels=dict(SELECTOR))
    plan = plan_node_labels("ns", "onload", "8.1.2.26", (), SELECTOR, nodes, {"worker-1"})
    assert [patch.node for patch in plan.patches] == ["worker-0"]
    assert plan.selected == 1
    unowned = plan_node_labels("ns", "onload", "8.1.2.26", (), {}, {"worker-1": NodeView("worker-1", labels={})})
    assert unowned.patches == []
