"""The node-by-node upgrade as a pure function: the observed nodes and pods in, the next writes out.

Every selected node that runs another revision than the target goes through the same steps::

    taint + remove gate label  -> StopDevicePlugin   (the device-plugin pod is gone)
                               -> EvictPods          (no pod using Onload is left)
    move KMM version labels    -> LoadModules        (KMM reports the target's modules loaded)
    set gate label             -> StartDevicePlugin  (the target's device-plugin pod is Ready)
    remove taint + state       -> done

Each arrow is one node patch that writes the new state together with its side effect, or before it (the
evictions follow the patch that enters EvictPods in the same ordered action list). A reconcile moves each node
at most one step, so whatever is interrupted, the next reconcile resumes from what the node carries. Nothing
here reads a clock or the API: ``now`` and the pods of the nodes in progress come in with the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from onload_operator.actions import Action, DeletePod, EvictPod, ObjectRef, PatchNode, PostEvent
from onload_operator.api.upgrade import UpgradePolicy
from onload_operator.observed import NodeView, PodView
from onload_operator.render import names
from onload_operator.upgrade import budget
from onload_operator.upgrade.revisions import Record, uses_sfc_on
from onload_operator.upgrade.state import (
    ANNOTATION,
    IN_PROGRESS,
    NodeUpgrade,
    Step,
    format_time,
    has_taint,
    owner_key,
    parse_time,
    state_of,
    upgrade_taint,
    with_taint,
    without_taint,
)
from onload_operator.upgrade.summary import Summary, summarize

NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True)
class RolloutInput:
    namespace: str
    name: str
    onload: ObjectRef
    """The CR, for Events."""
    target: str
    """The revision id the nodes are moved to."""
    revisions: Mapping[str, Record]
    """Every known revision (the registry, target included)."""
    policy: UpgradePolicy
    nodes: Mapping[str, NodeView]
    selected: frozenset[str]
    pods: Mapping[str, Sequence[PodView]]
    """Every pod on each node that needs_pods named (read fresh by the reconciler)."""
    now: datetime
    eviction_blocks: Mapping[str, str] = field(default_factory=dict)
    """Node → why its last eviction was refused (the API's message names the PodDisruptionBudget)."""
    previous: Mapping[str, Any] | None = None
    """The current ``status.upgrade``."""
    may_take: bool = True
    """Whether new nodes may be taken: only once the cluster records the target revision (the onload Module's
    registry), so that whatever happens next, the operator can render what every node runs."""


@dataclass(frozen=True)
class RolloutPlan:
    actions: tuple[Action, ...]
    """Node patches first, then the evictions (and pod deletions) they announce."""
    events: tuple[PostEvent, ...]
    """An Event on the CR and on the Node for each node transition, posted after the writes."""
    owned: frozenset[str]
    """Nodes in the upgrade's hands: the steady-state label protocol leaves them alone."""
    summary: Summary | None
    waiting: bool
    """Nodes are in progress: reconcile again soon (their pods are not watched)."""


class _Rollout:
    """One planning pass; collects the actions and each node's state after it."""

    def __init__(self, given: RolloutInput) -> None:
        self.given = given
        self.policy = given.policy
        self.now = given.now
        namespace, name = given.namespace, given.name
        self.owner = owner_key(namespace, name)
        self.onload_key, self.sfc_key, self.gate_key, _ = names.node_label_keys(namespace, name)
        self.onload_ready = names.kmm_version_ready_label(namespace, names.module_name(name))
        self.sfc_ready = names.kmm_version_ready_label(namespace, names.sfc_module_name(name))
        self.taint = upgrade_taint(namespace, name)
        self.target = given.target
        self.target_record = given.revisions.get(self.target) or {}
        self.plugin_names = {names.device_plugin_name(name)} | {
            names.device_plugin_revision_name(name, revision) for revision in {*given.revisions, self.target}
        }
        self.target_plugin = names.device_plugin_revision_name(name, self.target)
        self.actions: list[Action] = []
        """Node patches: each persists a node's state with, or before, its side effect."""
        self.pod_actions: list[EvictPod | DeletePod] = []
        """Evictions and deletions, run after every node patch of the pass (so after their node's step is stored)."""
        self.events: list[PostEvent] = []
        self.states: dict[str, NodeUpgrade] = {}
        self.written: set[str] = set()
        """Nodes patched in this pass: each node moves at most one step per reconcile."""

    # --- writes -------------------------------------------------------------------------------------

    def write(
        self,
        node: NodeView,
        state: NodeUpgrade | None,
        labels: Mapping[str, str | None] | None = None,
        *,
        taint: bool | None = None,
    ) -> None:
        """One node patch: the state annotation (None removes it), labels, and the taint added or removed."""
        taints = None
        if taint is True and not has_taint(node, self.taint):
            taints = with_taint(node, self.taint)
        elif taint is False and has_taint(node, self.taint):
            taints = without_taint(node, self.taint)
        self.actions.append(
            PatchNode(
                node.name,
                labels=dict(labels or {}),
                annotations={ANNOTATION: None if state is None else state.encode()},
                taints=taints,
                resource_version=node.resource_version if taints is not None else None,
            )
        )
        if state is None:
            self.states.pop(node.name, None)
        else:
            self.states[node.name] = state
        self.written.add(node.name)

    def _event(self, node: str, type_: str, reason: str, message: str) -> None:
        text = f"{node}: {message}"
        self.events.append(PostEvent(self.given.onload, type_, reason, text, series=node))
        node_ref = ObjectRef("v1", "Node", node)
        self.events.append(PostEvent(node_ref, type_, reason, f"Onload {self.owner}: {message}"))

    # --- reading ------------------------------------------------------------------------------------

    def _pods(self, node: str) -> Sequence[PodView]:
        return self.given.pods.get(node, ())

    def _plugin_pods(self, node: str) -> list[PodView]:
        return [p for p in self._pods(node) if p.labels.get(names.NAME_LABEL) in self.plugin_names]

    def _target_sfc(self, node: NodeView) -> bool:
        """Whether the target loads sfc on this node: its kernel's mapping asks for it."""
        return uses_sfc_on(self.target_record, node.kernel_version)

    def _runs_target(self, node: NodeView) -> bool:
        labels = node.labels
        sfc = labels.get(self.sfc_key)
        wanted_sfc = self.target if self._target_sfc(node) else None
        return labels.get(self.onload_key) == self.target and sfc == wanted_sfc

    def _module_labels(self, node: NodeView) -> dict[str, str | None]:
        return {self.onload_key: self.target, self.sfc_key: self.target if self._target_sfc(node) else None}

    def _loaded(self, node: NodeView) -> bool:
        labels = node.labels
        onload = labels.get(self.onload_ready) == self.target
        return onload and (not self._target_sfc(node) or labels.get(self.sfc_ready) == self.target)

    # --- the steps ----------------------------------------------------------------------------------

    def take(self, node: NodeView) -> None:
        source = node.labels.get(self.onload_key, "")
        state = NodeUpgrade(self.owner, source, self.target, Step.STOP_DEVICE_PLUGIN, format_time(self.now))
        self.write(node, state, {self.gate_key: None}, taint=True)
        self._event(node.name, NORMAL, "UpgradeStarted", f"upgrading Onload {source or '(none)'} -> {self.target}")

    def fail(self, node: NodeView, state: NodeUpgrade, reason: str) -> None:
        self.write(node, state.at(Step.FAILED, self.now, reason))
        self._event(node.name, WARNING, "UpgradeFailed", f"{state.step.value} failed: {reason}")

    def stop_device_plugin(self, node: NodeView, state: NodeUpgrade) -> None:
        plugins = self._plugin_pods(node.name)
        if plugins:
            if node.labels.get(self.gate_key) is not None:
                self.write(node, state, {self.gate_key: None})
            elif state.elapsed(self.now) > self.policy.device_plugin_timeout_seconds:
                self.fail(
                    node,
                    state,
                    f"device-plugin pod {plugins[0].ref} did not stop within "
                    f"{self.policy.device_plugin_timeout_seconds}s",
                )
            return
        if self._runs_target(node):
            # Nothing to replace (a rollback before the modules moved): no pod needs evicting.
            self.write(node, state.at(Step.LOAD_MODULES, self.now))
            return
        pods = self._onload_pods(node.name)
        if not pods:
            # No pod to evict (the pods were read in this pass): the modules move at once.
            self._load(node, state)
            return
        self.write(node, state.at(Step.EVICT_PODS, self.now))
        self._evict(node.name, pods)

    def _onload_pods(self, node: str) -> list[PodView]:
        return [p for p in self._pods(node) if p.requests_onload]

    def _evict(self, node: str, pods: Sequence[PodView]) -> None:
        self.pod_actions.extend(EvictPod(p.namespace, p.name, p.uid) for p in pods if not p.terminating)

    def _load(self, node: NodeView, state: NodeUpgrade) -> None:
        """Move the KMM labels to the target together with the step that waits for the modules."""
        self.write(node, state.at(Step.LOAD_MODULES, self.now), self._module_labels(node))
        self._event(node.name, NORMAL, "LoadingModules", f"no pod uses Onload; KMM loads {self.target}")

    def evict_pods(self, node: NodeView, state: NodeUpgrade) -> None:
        pods = self._onload_pods(node.name)
        if not pods:
            self._load(node, state)
            return
        blocked = self.given.eviction_blocks.get(node.name, "")
        waiting = blocked or "waiting for " + ", ".join(p.ref for p in pods[:3]) + _more(pods, 3)
        if state.elapsed(self.now) <= self.policy.eviction_timeout_seconds:
            if waiting != state.reason:
                self.write(node, replace(state, reason=waiting))
            self._evict(node.name, pods)
            return
        timeout = f"evictions did not finish within {self.policy.eviction_timeout_seconds}s ({waiting})"
        action = self.policy.on_eviction_timeout
        if action == "Fail":
            self.fail(node, state, timeout)
        elif action == "SkipNode":
            source = node.labels.get(self.onload_key)
            skipped = state.at(Step.SKIPPED, self.now, timeout)
            self.write(node, skipped, {self.gate_key: source}, taint=False)
            self._event(node.name, WARNING, "UpgradeSkipped", f"{timeout}; the node keeps {source}")
        else:
            if state.reason != timeout:
                self.write(node, replace(state, reason=timeout))
            self.pod_actions.extend(DeletePod(p.namespace, p.name, p.uid) for p in pods if not p.terminating)

    def load_modules(self, node: NodeView, state: NodeUpgrade) -> None:
        labels = self._module_labels(node)
        if any(node.labels.get(key) != value for key, value in labels.items()):
            self.write(node, state, labels)
            return
        if self._loaded(node):
            self.write(node, state.at(Step.START_DEVICE_PLUGIN, self.now), {self.gate_key: self.target})
            self._event(node.name, NORMAL, "StartingDevicePlugin", f"modules {self.target} loaded")
        elif state.elapsed(self.now) > self.policy.module_timeout_seconds:
            self.fail(
                node, state, f"KMM did not report {self.target} loaded within {self.policy.module_timeout_seconds}s"
            )

    def start_device_plugin(self, node: NodeView, state: NodeUpgrade) -> None:
        if node.labels.get(self.gate_key) != self.target:
            self.write(node, state, {self.gate_key: self.target})
            return
        ready = any(
            p.ready and not p.terminating and p.labels.get(names.NAME_LABEL) == self.target_plugin
            for p in self._pods(node.name)
        )
        if ready:
            self.write(node, None, taint=False)
            self._event(node.name, NORMAL, "NodeUpgraded", f"runs Onload {self.target}")
        elif state.elapsed(self.now) > self.policy.device_plugin_timeout_seconds:
            self.fail(
                node,
                state,
                f"device-plugin pod of {self.target} not Ready within {self.policy.device_plugin_timeout_seconds}s",
            )

    def retarget(self, node: NodeView, state: NodeUpgrade) -> None:
        """Point a node in progress (or failed) for an older target at the current one, at a step boundary."""
        moved = replace(state, target=self.target)
        if state.step in (Step.STOP_DEVICE_PLUGIN, Step.EVICT_PODS):
            self.write(node, moved)
        elif state.step == Step.LOAD_MODULES:
            self.write(node, moved.at(Step.LOAD_MODULES, self.now), self._module_labels(node))
        else:
            restart = moved.at(Step.STOP_DEVICE_PLUGIN, self.now)
            if state.step == Step.FAILED:
                restart = replace(restart, attempt=state.attempt + 1)
            self.write(node, restart, {self.gate_key: None}, taint=True)
        self._event(node.name, NORMAL, "UpgradeRetargeted", f"now moving to {self.target}")

    def pause(self, node: NodeView, state: NodeUpgrade) -> None:
        if not state.paused:
            self.write(node, replace(state, paused=format_time(self.now)))

    def resume(self, node: NodeView, state: NodeUpgrade) -> None:
        """The time spent paused does not count against the step's timeout."""
        paused, since = parse_time(state.paused), parse_time(state.since)
        shifted = since + (self.now - paused) if paused is not None and since is not None else self.now
        self.write(node, replace(state, since=format_time(shifted), paused=""))

    def advance(self, node: NodeView, state: NodeUpgrade) -> None:
        step = {
            Step.STOP_DEVICE_PLUGIN: self.stop_device_plugin,
            Step.EVICT_PODS: self.evict_pods,
            Step.LOAD_MODULES: self.load_modules,
            Step.START_DEVICE_PLUGIN: self.start_device_plugin,
        }.get(state.step)
        if step is not None:
            step(node, state)


def _more(items: Sequence[object], shown: int) -> str:
    return f" and {len(items) - shown} more" if len(items) > shown else ""


def needs_pods(namespace: str, name: str, nodes: Mapping[str, NodeView]) -> list[str]:
    """Nodes whose pods the next plan reads: those in a step that waits on pods."""
    waiting = (Step.STOP_DEVICE_PLUGIN, Step.EVICT_PODS, Step.START_DEVICE_PLUGIN)
    return sorted(n for n, view in nodes.items() if (s := state_of(view, namespace, name)) and s.step in waiting)


def plan_rollout(given: RolloutInput) -> RolloutPlan:
    """The next writes of the rollout of ``given.target`` to the selected nodes."""
    rollout = _Rollout(given)
    nodes = given.nodes
    states = {n: s for n, view in sorted(nodes.items()) if (s := state_of(view, given.namespace, given.name))}
    for node, state in states.items():
        view = nodes[node]
        if node not in given.selected:
            # Left the selector mid-way: release the node; the steady-state protocol takes it from here.
            rollout.write(view, None, taint=False)
            continue
        rollout.states[node] = state
        if state.step == Step.SKIPPED:
            if state.target != given.target:
                rollout.write(view, None)  # skipped for an older target: a candidate again next time
            continue
        if given.policy.paused:
            if state.step in IN_PROGRESS:
                rollout.pause(view, state)
            continue
        if state.paused:
            rollout.resume(view, state)
        elif state.target != given.target:
            rollout.retarget(view, state)
        else:
            rollout.advance(view, state)

    owned = {n for n, s in rollout.states.items() if s.step != Step.SKIPPED}
    failed = sum(s.step == Step.FAILED and s.target == given.target for s in rollout.states.values())
    skipped = {n for n, s in rollout.states.items() if s.step == Step.SKIPPED}
    candidates = [
        node
        for node in sorted(given.selected)
        if node in nodes
        and node not in rollout.states
        and node not in rollout.written
        and (
            has_taint(nodes[node], rollout.taint)  # retried by hand: the state annotation was removed
            or nodes[node].labels.get(rollout.onload_key) not in (None, given.target)
        )
    ]
    if given.may_take and not given.policy.paused and failed < given.policy.max_failures:
        # A node released in this pass still counts: its patch runs in parallel with those taking new nodes, so
        # until the next pass it may still be tainted while they already are.
        busy = {n for n, st in rollout.states.items() if st.step in IN_PROGRESS}
        busy |= {n for n, st in states.items() if st.step in IN_PROGRESS and n in given.selected}
        in_progress = len(busy)
        for node in budget.pick(
            candidates,
            nodes,
            in_progress=in_progress,
            max_parallel=given.policy.max_parallel,
            out_of_service=budget.unavailable(given.selected, nodes, owned | set(busy)),
            unavailable_budget=budget.max_unavailable(given.policy.max_unavailable, len(given.selected)),
        ):
            rollout.take(nodes[node])
            owned.add(node)
    summary = summarize(
        given,
        rollout.states,
        pending=[n for n in candidates if n not in owned],
        skipped=skipped,
        running={n: nodes[n].labels.get(rollout.onload_key, "") for n in given.selected if n in nodes},
        active=bool(states),
    )
    waiting = any(s.step in IN_PROGRESS for s in rollout.states.values())
    actions = (*rollout.actions, *rollout.pod_actions)
    return RolloutPlan(actions, tuple(rollout.events), frozenset(owned), summary, waiting)
