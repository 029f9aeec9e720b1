"""The upgrade machine step by step: what each state leads to, with every timeout and policy choice."""

from __future__ import annotations

from dataclasses import replace

from onload_operator.actions import DeletePod, EvictPod, PatchNode
from onload_operator.api.upgrade import UpgradePolicy
from onload_operator.upgrade import needs_pods
from onload_operator.upgrade.state import Step
from tests.unit.upgrade_helpers import (
    GATE_KEY,
    ONLOAD_KEY,
    ONLOAD_READY,
    SFC_KEY,
    SFC_READY,
    TAINT,
    node,
    node_patches,
    plan,
    plugin_pod,
    pod,
    record,
    running,
    state,
    written_state,
)


def only_patch(result_actions: tuple[object, ...], name: str) -> PatchNode:
    patches = node_patches(result_actions)  # type: ignore[arg-type]
    assert len(patches.get(name, [])) == 1, patches
    return patches[name][0]


def test_taking_a_node_taints_it_and_removes_the_gate_in_one_guarded_patch() -> None:
    result = plan([node("a")])
    patch = only_patch(result.actions, "a")
    assert patch.labels == {GATE_KEY: None}
    assert patch.taints == (TAINT,)
    assert patch.resource_version == "7"
    taken = written_state(patch)
    assert taken is not None
    assert (taken.step, taken.source, taken.target) == (Step.STOP_DEVICE_PLUGIN, "v1", "v2")
    assert result.owned == {"a"}
    assert result.waiting is True  # the node taken now waits on its pods
    reasons = [event.reason for event in result.events]
    assert reasons == ["UpgradeStarted", "UpgradeStarted"]  # on the CR and on the Node


def test_other_taints_and_cordons_are_kept() -> None:
    from onload_operator.observed import Taint

    foreign = Taint("dedicated", "NoSchedule", "trading")
    view = node("a")
    view = type(view)(**{**view.__dict__, "taints": (foreign,), "unschedulable": True})
    patch = only_patch(plan([view]).actions, "a")
    assert patch.taints == (foreign, TAINT)


def test_nodes_running_the_target_or_nothing_are_not_taken() -> None:
    result = plan([node("a", running("v2")), node("b", {"role": "onload"})])
    assert result.actions == ()
    assert result.summary is None


def test_stop_waits_for_the_plugin_pod_then_evicts_after_persisting_the_step() -> None:
    waiting = node("a", {k: v for k, v in running("v1").items() if k != GATE_KEY}, state(Step.STOP_DEVICE_PLUGIN))
    result = plan([waiting], pods={"a": [plugin_pod("a", terminating=True)]})
    assert node_patches(result.actions) == {}
    result = plan([waiting], pods={"a": [pod("app", "a", requests_onload=True), pod("other", "a")]})
    assert isinstance(result.actions[0], PatchNode)
    evicting = written_state(result.actions[0])
    assert evicting is not None
    assert evicting.step == Step.EVICT_PODS
    assert result.actions[1] == EvictPod("apps", "app", "uid-app")
    assert [a for a in result.actions if isinstance(a, EvictPod)] == [EvictPod("apps", "app", "uid-app")]


def test_stop_removes_a_gate_label_put_back_by_hand() -> None:
    result = plan([node("a", running("v1"), state(Step.STOP_DEVICE_PLUGIN))], pods={"a": [plugin_pod("a")]})
    assert only_patch(result.actions, "a").labels == {GATE_KEY: None}


def test_stop_fails_after_the_device_plugin_timeout() -> None:
    labels = {k: v for k, v in running("v1").items() if k != GATE_KEY}
    stuck = node("a", labels, state(Step.STOP_DEVICE_PLUGIN, seconds_ago=301))
    failed = written_state(only_patch(plan([stuck], pods={"a": [plugin_pod("a")]}).actions, "a"))
    assert failed is not None
    assert failed.step == Step.FAILED
    assert "did not stop within 300s" in failed.reason


def test_evict_repeats_for_live_pods_and_waits_for_terminating_ones() -> None:
    evicting = node("a", running("v1"), state(Step.EVICT_PODS, reason="waiting for apps/app"))
    result = plan([evicting], pods={"a": [pod("app", "a", requests_onload=True)]})
    assert result.actions == (EvictPod("apps", "app", "uid-app"),)
    result = plan([evicting], pods={"a": [pod("app", "a", requests_onload=True, terminating=True)]})
    assert result.actions == ()
    assert result.waiting is True


def test_a_blocked_eviction_is_recorded_and_named() -> None:
    evicting = node("a", running("v1"), state(Step.EVICT_PODS))
    message = "Cannot evict pod as it would violate the pod's disruption budget (apps/app-pdb)"
    result = plan([evicting], pods={"a": [pod("app", "a", requests_onload=True)]}, blocks={"a": message})
    recorded = written_state(result.actions[0])  # type: ignore[arg-type]
    assert recorded is not None
    assert recorded.reason == message
    assert result.actions[1] == EvictPod("apps", "app", "uid-app")
    assert result.summary is not None
    assert result.summary.status["phase"] == "Blocked"
    blocked = next(c for c in result.summary.conditions if c.type == "UpgradeBlocked")
    assert (blocked.status, blocked.reason) == ("True", "EvictionBlocked")
    assert "a: " in blocked.message
    assert "app-pdb" in blocked.message


def test_evicted_node_moves_the_kmm_labels_with_the_step() -> None:
    evicting = node("a", running("v1"), state(Step.EVICT_PODS))
    patch = only_patch(plan([evicting], pods={"a": [pod("other", "a")]}).actions, "a")
    assert patch.labels == {ONLOAD_KEY: "v2", SFC_KEY: None}
    moved = written_state(patch)
    assert moved is not None
    assert moved.step == Step.LOAD_MODULES


def test_sfc_label_follows_the_target() -> None:
    revisions = {"v1": record("v1"), "v2": record("v2", sfc=True)}
    evicting = node("a", running("v1"), state(Step.EVICT_PODS))
    patch = only_patch(plan([evicting], revisions=revisions).actions, "a")
    assert patch.labels == {ONLOAD_KEY: "v2", SFC_KEY: "v2"}


def test_eviction_timeout_fail() -> None:
    evicting = node("a", running("v1"), state(Step.EVICT_PODS, seconds_ago=301))
    result = plan([evicting], pods={"a": [pod("app", "a", requests_onload=True)]})
    failed = written_state(only_patch(result.actions, "a"))
    assert failed is not None
    assert failed.step == Step.FAILED
    assert not [a for a in result.actions if isinstance(a, EvictPod)]


def test_eviction_timeout_skip_node_restores_the_node() -> None:
    evicting = node(
        "a", {k: v for k, v in running("v1").items() if k != GATE_KEY}, state(Step.EVICT_PODS, seconds_ago=301)
    )
    policy = UpgradePolicy(on_eviction_timeout="SkipNode")
    result = plan([evicting], pods={"a": [pod("app", "a", requests_onload=True)]}, policy=policy)
    patch = only_patch(result.actions, "a")
    assert patch.labels == {GATE_KEY: "v1"}
    assert patch.taints == ()
    skipped = written_state(patch)
    assert skipped is not None
    assert skipped.step == Step.SKIPPED
    assert result.owned == frozenset()
    # Not taken again for the same target, taken again for another.
    again = node("a", running("v1"), skipped, tainted=False)
    assert plan([again], policy=policy).actions == ()
    unmarked = only_patch(plan([again], target="v3", revisions={"v3": record("v3")}).actions, "a")
    assert unmarked.annotations == {"onload.amd.com/upgrade": None}


def test_eviction_timeout_force_deletes_the_pods() -> None:
    evicting = node("a", running("v1"), state(Step.EVICT_PODS, seconds_ago=301))
    policy = UpgradePolicy(on_eviction_timeout="Force")
    result = plan([evicting], pods={"a": [pod("app", "a", requests_onload=True)]}, policy=policy)
    assert DeletePod("apps", "app", "uid-app") in result.actions
    assert not [a for a in result.actions if isinstance(a, EvictPod)]


def test_load_waits_for_kmm_then_sets_the_gate() -> None:
    moved = {**running("v1"), ONLOAD_KEY: "v2"}
    del moved[GATE_KEY]
    loading = node("a", moved, state(Step.LOAD_MODULES))
    assert plan([loading]).actions == ()
    loaded = node("a", {**moved, ONLOAD_READY: "v2"}, state(Step.LOAD_MODULES))
    patch = only_patch(plan([loaded]).actions, "a")
    assert patch.labels == {GATE_KEY: "v2"}
    starting = written_state(patch)
    assert starting is not None
    assert starting.step == Step.START_DEVICE_PLUGIN


def test_load_needs_both_modules_when_the_target_uses_sfc() -> None:
    revisions = {"v1": record("v1"), "v2": record("v2", sfc=True)}
    labels = {**running("v1"), ONLOAD_KEY: "v2", SFC_KEY: "v2", ONLOAD_READY: "v2"}
    assert plan([node("a", labels, state(Step.LOAD_MODULES))], revisions=revisions).actions == ()
    labels[SFC_READY] = "v2"
    patch = only_patch(plan([node("a", labels, state(Step.LOAD_MODULES))], revisions=revisions).actions, "a")
    assert patch.labels == {GATE_KEY: "v2"}


def test_load_fails_after_the_module_timeout_and_keeps_the_taint() -> None:
    moved = {**running("v1"), ONLOAD_KEY: "v2"}
    result = plan([node("a", moved, state(Step.LOAD_MODULES, seconds_ago=601))])
    patch = only_patch(result.actions, "a")
    assert patch.taints is None  # the taint stays
    failed = written_state(patch)
    assert failed is not None
    assert failed.step == Step.FAILED
    assert "within 600s" in failed.reason


def test_start_waits_for_the_targets_plugin_pod_then_releases_the_node() -> None:
    labels = {**running("v2")}
    starting = node("a", labels, state(Step.START_DEVICE_PLUGIN))
    assert plan([starting], pods={"a": [plugin_pod("a", "v1", ready=True)]}).actions == ()
    assert plan([starting], pods={"a": [plugin_pod("a", "v2")]}).actions == ()
    result = plan([starting], pods={"a": [plugin_pod("a", "v2", ready=True)]})
    patch = only_patch(result.actions, "a")
    assert patch.annotations == {"onload.amd.com/upgrade": None}
    assert patch.taints == ()
    assert patch.resource_version == "7"
    assert result.summary is not None
    assert result.summary.complete


def test_start_fails_after_the_device_plugin_timeout() -> None:
    starting = node("a", running("v2"), state(Step.START_DEVICE_PLUGIN, seconds_ago=301))
    failed = written_state(only_patch(plan([starting]).actions, "a"))
    assert failed is not None
    assert failed.step == Step.FAILED


def test_a_rollback_before_the_modules_moved_evicts_nothing() -> None:
    labels = {k: v for k, v in running("v1").items() if k != GATE_KEY}
    stopping = node("a", labels, state(Step.STOP_DEVICE_PLUGIN, target="v1"))
    result = plan([stopping], target="v1", pods={"a": [pod("app", "a", requests_onload=True)]})
    patch = only_patch(result.actions, "a")
    loading = written_state(patch)
    assert loading is not None
    assert loading.step == Step.LOAD_MODULES
    assert not [a for a in result.actions if isinstance(a, EvictPod)]


def test_retarget_at_each_step() -> None:
    revisions = {**REVISIONS_V3}
    moved = {**running("v1"), ONLOAD_KEY: "v2"}
    loading = node("a", moved, state(Step.LOAD_MODULES))
    patch = only_patch(plan([loading], target="v3", revisions=revisions).actions, "a")
    assert patch.labels == {ONLOAD_KEY: "v3", SFC_KEY: None}
    retargeted = written_state(patch)
    assert retargeted is not None
    assert (retargeted.step, retargeted.target) == (Step.LOAD_MODULES, "v3")

    failed = node("a", moved, state(Step.FAILED, reason="boom"))
    patch = only_patch(plan([failed], target="v3", revisions=revisions).actions, "a")
    restarted = written_state(patch)
    assert restarted is not None
    assert (restarted.step, restarted.target, restarted.attempt) == (Step.STOP_DEVICE_PLUGIN, "v3", 2)
    assert patch.labels == {GATE_KEY: None}

    evicting = node("a", running("v1"), state(Step.EVICT_PODS))
    kept = written_state(only_patch(plan([evicting], target="v3", revisions=revisions).actions, "a"))
    assert kept is not None
    assert (kept.step, kept.target) == (Step.EVICT_PODS, "v3")


REVISIONS_V3 = {"v1": record("v1"), "v2": record("v2"), "v3": record("v3")}


def test_paused_rollout_takes_nothing_and_stamps_nodes_in_progress() -> None:
    policy = UpgradePolicy(paused=True)
    result = plan([node("a", running("v1"), state(Step.EVICT_PODS, seconds_ago=100)), node("b")], policy=policy)
    patches = node_patches(result.actions)
    assert list(patches) == ["a"]
    paused = written_state(patches["a"][0])
    assert paused is not None
    assert paused.paused
    assert not [a for a in result.actions if isinstance(a, EvictPod)]
    assert result.summary is not None
    assert result.summary.status["phase"] == "Paused"


def test_resume_does_not_count_the_pause_against_the_timeout() -> None:
    from datetime import timedelta

    from onload_operator.upgrade.state import format_time, parse_time
    from tests.unit.upgrade_helpers import NOW

    paused_at = format_time(NOW - timedelta(seconds=1000))
    evicting = node("a", running("v1"), state(Step.EVICT_PODS, seconds_ago=1100, paused=paused_at))
    resumed = written_state(only_patch(plan([evicting]).actions, "a"))
    assert resumed is not None
    assert not resumed.paused
    since = parse_time(resumed.since)
    assert since is not None
    assert (NOW - since).total_seconds() == 100


def test_a_node_that_leaves_the_selector_is_released() -> None:
    result = plan([node("a", running("v1"), state(Step.EVICT_PODS))], selected=[])
    patch = only_patch(result.actions, "a")
    assert patch.annotations == {"onload.amd.com/upgrade": None}
    assert patch.taints == ()
    assert result.owned == frozenset()


def test_a_failed_node_removed_annotation_is_retried() -> None:
    retried = node("a", {**running("v1"), ONLOAD_KEY: "v2"}, None, tainted=True)
    patch = only_patch(plan([retried]).actions, "a")
    taken = written_state(patch)
    assert taken is not None
    assert taken.step == Step.STOP_DEVICE_PLUGIN
    assert patch.taints is None  # the taint is there already


def test_needs_pods_lists_the_steps_that_wait_on_pods() -> None:
    nodes = {
        "a": node("a", running("v1"), state(Step.STOP_DEVICE_PLUGIN)),
        "b": node("b", running("v1"), state(Step.LOAD_MODULES)),
        "c": node("c", running("v1"), state(Step.START_DEVICE_PLUGIN)),
        "d": node("d"),
    }
    assert needs_pods("ns", "onl", nodes) == ["a", "c"]


def test_sfc_follows_the_mapping_of_the_node_kernel() -> None:
    """sfc on only the el9 mapping: the el9 node loads and waits for both modules, the other only for onload."""
    target = record("v2")
    target["onload"]["kernelMappings"] = [
        {"regexp": r"\.el9\.", "kernelModuleImage": "kmod:v2-el9", "sfc": {}},
        {"regexp": r"^6\.", "kernelModuleImage": "kmod:v2-deb"},
    ]
    revisions = {"v1": record("v1"), "v2": target}
    for kernel, sfc in (("5.14.0-284.el9.x86_64", "v2"), ("6.1.0-18-amd64", None)):
        evicting = replace(node("a", running("v1"), state(Step.EVICT_PODS)), kernel_version=kernel)
        patch = only_patch(plan([evicting], revisions=revisions).actions, "a")
        assert patch.labels == {ONLOAD_KEY: "v2", SFC_KEY: sfc}
        loaded = {**running("v1"), ONLOAD_KEY: "v2", ONLOAD_READY: "v2", **({SFC_KEY: "v2"} if sfc else {})}
        loading = replace(node("a", loaded, state(Step.LOAD_MODULES)), kernel_version=kernel)
        started = plan([loading], revisions=revisions).actions
        assert (started == ()) is (sfc is not None), kernel  # the el9 node still waits for sfc
