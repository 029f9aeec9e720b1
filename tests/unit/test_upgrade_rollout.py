"""The upgrade machine over a whole rollout: budgets, failures, the summary, and invariants checked after every
step of a simulated cluster (never more than maxParallel in progress or maxUnavailable out of service, never an
eviction before the plugin is gone, never a gate label whose version differs from the loaded modules)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace

import pytest

from onload_operator.actions import EvictPod, PatchNode
from onload_operator.api.upgrade import UpgradePolicy
from onload_operator.observed import NodeView, PodView
from onload_operator.upgrade import budget, plan_rollout
from onload_operator.upgrade.state import Step, state_of
from tests.unit.upgrade_helpers import (
    GATE_KEY,
    NAME,
    NAMESPACE,
    ONLOAD_KEY,
    ONLOAD_READY,
    SFC_KEY,
    node,
    plan,
    plugin_pod,
    pod,
    running,
    state,
)


@pytest.mark.parametrize(
    ("value", "selected", "expected"),
    [(1, 10, 1), (3, 10, 3), ("10%", 5, 1), ("50%", 5, 3), ("100%", 4, 4), ("1%", 1000, 10)],
)
def test_max_unavailable_rounds_percentages_up(value: int | str, selected: int, expected: int) -> None:
    assert budget.max_unavailable(value, selected) == expected


def taken(nodes: list[NodeView], policy: UpgradePolicy) -> list[str]:
    result = plan(nodes, policy=policy)
    return sorted({a.node for a in result.actions if isinstance(a, PatchNode)})


def test_max_parallel_and_max_unavailable() -> None:
    nodes = [node(n) for n in "abcde"]
    assert taken(nodes, UpgradePolicy()) == ["a"]
    assert taken(nodes, UpgradePolicy(max_parallel=3)) == ["a"]  # maxUnavailable 1 still holds
    assert taken(nodes, UpgradePolicy(max_parallel=3, max_unavailable=3)) == ["a", "b", "c"]
    assert taken(nodes, UpgradePolicy(max_parallel=5, max_unavailable="40%")) == ["a", "b"]


def test_nodes_out_of_service_go_first_and_count_against_max_unavailable() -> None:
    nodes = [node("a"), node("b", ready=False), node("c", unschedulable=True), node("d")]
    assert taken(nodes, UpgradePolicy(max_parallel=4, max_unavailable=2)) == ["b", "c"]
    # A cordoned node that needs nothing still uses the budget.
    nodes = [node("a"), node("b", running("v2"), unschedulable=True)]
    assert taken(nodes, UpgradePolicy(max_parallel=2)) == []


def test_max_failures_stops_taking_nodes_and_names_them() -> None:
    failed = node("a", {**running("v1"), ONLOAD_KEY: "v2"}, state(Step.FAILED, reason="KMM did not report v2"))
    result = plan([failed, node("b"), node("c")], policy=UpgradePolicy(max_unavailable=3))
    assert result.actions == ()
    assert result.summary is not None
    assert result.summary.status["phase"] == "Failed"
    fail = next(c for c in result.summary.conditions if c.type == "UpgradeFailed")
    assert fail.status == "True"
    assert "a: KMM did not report v2" in fail.message
    assert "kubectl annotate node <node> onload.amd.com/upgrade-" in fail.message
    # With room for two failures the rollout goes on.
    result = plan([failed, node("b"), node("c")], policy=UpgradePolicy(max_failures=2, max_unavailable=3))
    assert [a.node for a in result.actions if isinstance(a, PatchNode)] == ["b"]


def test_summary_counts_and_keeps_the_source_through_the_rollout() -> None:
    nodes = [
        node("a", running("v2")),
        node("b", running("v1"), state(Step.EVICT_PODS)),
        node("c"),
        node("d"),
    ]
    result = plan(nodes, pods={"b": [pod("app", "b", requests_onload=True)]})
    assert result.summary is not None
    status = result.summary.status
    assert {k: status[k] for k in ("from", "to", "phase", "progress", "done", "inProgress", "pending")} == {
        "from": "v1",
        "to": "v2",
        "phase": "Progressing",
        "progress": "1/4",
        "done": 1,
        "inProgress": 1,
        "pending": 2,
    }
    assert [n["name"] for n in status["nodes"]] == ["b"]
    upgrading = result.summary.conditions[0]
    assert (upgrading.type, upgrading.status) == ("Upgrading", "True")
    assert "b: EvictPods" in upgrading.message
    done = plan([node(n, running("v2")) for n in "abcd"], previous=status)
    assert done.summary is not None
    assert done.summary.status["from"] == "v1"
    assert done.summary.status["phase"] == "Complete"
    assert done.summary.status["progress"] == "4/4"


class World:
    """A tiny cluster: applies the machine's node patches, and moves plugins, pods and modules on by itself."""

    def __init__(self, count: int, seed: int) -> None:
        self.random = random.Random(seed)
        self.nodes = {f"n{i}": node(f"n{i}") for i in range(count)}
        self.pods: dict[str, list[PodView]] = {
            n: [plugin_pod(n, "v1", ready=True), pod(f"app-{n}", n, requests_onload=True)] for n in self.nodes
        }
        self.evictions: dict[str, int] = {}

    def apply(self, actions: tuple[object, ...], policy: UpgradePolicy) -> None:
        """Carry the actions out as the executor does: node patches in a parallel batch (here, in a random order,
        the invariants checked after each), then the evictions."""
        patches = [a for a in actions if isinstance(a, PatchNode)]
        self.random.shuffle(patches)
        for patch in patches:
            self.apply_one(patch)
            self.check(policy)
        for action in actions:
            if not isinstance(action, PatchNode):
                self.apply_one(action)

    def apply_one(self, action: object) -> None:
        if isinstance(action, PatchNode):
            view = self.nodes[action.node]
            labels = {**view.labels, **action.labels}
            annotations = {**view.annotations, **action.annotations}
            self.nodes[action.node] = replace(
                view,
                labels={k: v for k, v in labels.items() if v is not None},
                annotations={k: v for k, v in annotations.items() if v is not None},
                taints=view.taints if action.taints is None else action.taints,
            )
        elif isinstance(action, EvictPod):
            owner = next(n for n, pods in self.pods.items() if any(p.name == action.name for p in pods))
            assert not any(p.labels for p in self.pods[owner] if p.labels), "evicted before the plugin stopped"
            self.evictions[action.name] = self.evictions.get(action.name, 0) + 1
            self.pods[owner] = [replace(p, terminating=True) if p.name == action.name else p for p in self.pods[owner]]

    def tick(self) -> None:
        """The other controllers: each thing happens with some probability, so interleavings vary."""
        for name, view in self.nodes.items():
            labels = dict(view.labels)
            pods = self.pods[name]
            gate = labels.get(GATE_KEY)
            if self.random.random() < 0.5:
                # DaemonSet controller: a plugin pod of the gate's revision only.
                pods = [p for p in pods if not p.labels or (gate and p.name.startswith(f"dp-{gate}-"))]
                if gate and not any(p.labels for p in pods):
                    pods.append(plugin_pod(name, gate))
                pods = [replace(p, ready=True) if p.labels else p for p in pods]
            if self.random.random() < 0.5:
                pods = [p for p in pods if not p.terminating]
            if self.random.random() < 0.5 and labels.get(ONLOAD_KEY) != labels.get(ONLOAD_READY):
                labels[ONLOAD_READY] = labels[ONLOAD_KEY]  # KMM swapped the module
            self.pods[name] = pods
            self.nodes[name] = replace(view, labels=labels)

    def check(self, policy: UpgradePolicy) -> None:
        states = [state_of(v, NAMESPACE, NAME) for v in self.nodes.values()]
        in_progress = [s for s in states if s is not None and s.step not in (Step.FAILED, Step.SKIPPED)]
        assert len(in_progress) <= policy.max_parallel
        tainted = [v for v in self.nodes.values() if v.taints]
        assert len(tainted) <= budget.max_unavailable(policy.max_unavailable, len(self.nodes))
        for view in self.nodes.values():
            gate = view.labels.get(GATE_KEY)
            assert gate is None or gate == view.labels.get(ONLOAD_KEY) == view.labels.get(ONLOAD_READY), view
            assert SFC_KEY not in view.labels


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("parallel", [1, 3])
def test_a_whole_rollout_keeps_every_invariant(seed: int, parallel: int) -> None:
    world = World(7, seed)
    policy = UpgradePolicy(max_parallel=parallel, max_unavailable=parallel)
    for _round in range(400):
        view_of: Mapping[str, NodeView] = dict(world.nodes)
        result = plan(list(view_of.values()), pods=world.pods, policy=policy)
        world.apply(result.actions, policy)
        world.check(policy)
        if result.summary is not None and result.summary.complete:
            break
        world.tick()
        world.check(policy)
    assert all(v.labels.get(ONLOAD_KEY) == "v2" and v.labels.get(GATE_KEY) == "v2" for v in world.nodes.values())
    assert all(not v.taints and not v.annotations for v in world.nodes.values())
    assert world.evictions == {f"app-{n}": 1 for n in world.nodes}


def test_plan_rollout_is_pure() -> None:
    nodes = [node("a", running("v1"), state(Step.EVICT_PODS)), node("b")]
    pods = {"a": [pod("app", "a", requests_onload=True)]}
    assert plan(nodes, pods=pods) == plan(nodes, pods=pods)
    assert plan_rollout is not None
