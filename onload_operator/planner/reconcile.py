"""The plan of one reconcile of one CR, as a pure function: the observed snapshot in, the ordered writes out.

The plan lists only real changes (children that are missing, changed or drifted; node labels to set or remove;
a status that differs), so a converged CR plans nothing. Its actions run in order: children deleted, children
written, node labels, the status, then Events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from onload_operator.actions import (
    Action,
    ApplyChild,
    DeleteChild,
    ObjectRef,
    PatchChild,
    PatchStatus,
    PostEvent,
    ReplaceSpec,
)
from onload_operator.api.v1alpha1 import API_VERSION, KIND, Onload
from onload_operator.observed import NodeView
from onload_operator.planner import takeover
from onload_operator.planner.checks import Problem, device_plugin_image_problem, validate
from onload_operator.planner.compare import MISSING, apply_reason, foreign_managers
from onload_operator.planner.conflicts import selector_conflict
from onload_operator.planner.events import NORMAL, apply_event, node_events, replace_event, transition_events
from onload_operator.planner.nodes import plan_node_labels, sfc_nodes
from onload_operator.planner.revisions import Revisions, plan_revisions, recorded_registry
from onload_operator.planner.snapshot import (
    ChildKey,
    JsonObject,
    LastApplied,
    OnloadEntry,
    Snapshot,
    child_key,
    daemonsets,
    plugins_ready,
    selector_matches,
)
from onload_operator.planner.status import (
    APPLYING,
    RECREATING,
    UPGRADING,
    Holdup,
    Observation,
    compute_status,
)
from onload_operator.render import names
from onload_operator.render.children import render_children
from onload_operator.upgrade import RolloutInput, plan_rollout
from onload_operator.upgrade.state import parse_time

A = TypeVar("A", bound=Action)


@dataclass(frozen=True)
class Plan:
    """The writes of one reconcile, in the order they are made, and what they were decided from."""

    observation: Observation
    actions: tuple[Action, ...] = ()

    @property
    def writes(self) -> int:
        return len(self.actions)

    @property
    def status(self) -> Mapping[str, Any] | None:
        """The status this plan writes, if it differs from the current one."""
        return next((a.status for a in self.actions if isinstance(a, PatchStatus)), None)

    def of(self, kind: type[A]) -> list[A]:
        """The actions of one kind, in order."""
        return [action for action in self.actions if isinstance(action, kind)]


def plan(snapshot: Snapshot, device_plugin_image: str, now: str) -> Plan:
    """Everything to write so that the cluster matches ``snapshot.body``."""
    body = snapshot.body
    metadata = body.get("metadata") or {}
    generation = metadata.get("generation")
    onload, problems = validate(body)
    image_problem = device_plugin_image_problem(device_plugin_image)
    if image_problem is not None:
        problems.append(image_problem)
    if onload is not None and not problems:
        conflict = selector_conflict(_me(onload, body), snapshot.onloads, snapshot.nodes)
        if conflict is not None:
            problems.append(conflict)
    if onload is None or problems:
        namespace, name = str(metadata.get("namespace") or ""), str(metadata["name"])
        selector = onload.spec.selector if onload is not None else {}
        observation = Observation(
            generation,
            problems=problems,
            selected=_selected(snapshot.nodes, selector),
            module_ready=_module_ready_nodes(snapshot.nodes, namespace, name),
            device_plugin_ready=plugins_ready(snapshot),
            # What keeps running while the spec is refused.
            version=(body.get("status") or {}).get("version") if _onload_running(snapshot, namespace, name) else None,
        )
        return _with_status(body, observation, [], [], now)
    observation, writes, events = _plan_valid(onload, snapshot, device_plugin_image, generation, now)
    return _with_status(body, observation, writes, events, now)


def failure_plan(body: JsonObject, observation: Observation, error: Problem, now: str) -> Plan:
    """The status (and its Events) that reports repeated failures, from the last observation: what can still be
    written when the other writes keep failing."""
    return _with_status(body, dataclasses.replace(observation, errors=(error,)), [], [], now)


def _with_status(
    body: JsonObject, observation: Observation, writes: Sequence[Action], events: Sequence[PostEvent], now: str
) -> Plan:
    previous = body.get("status")
    status = compute_status(observation, previous, now)
    if not _status_differs(status, previous):
        return Plan(observation, (*writes, *events))
    transitions = transition_events(_ref(body), previous, status)
    return Plan(observation, (*writes, PatchStatus(status), *transitions, *events))


def _status_differs(computed: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    current = current or {}
    return any(current.get(key) != value for key, value in computed.items())


def _ref(body: JsonObject) -> ObjectRef:
    metadata = body.get("metadata") or {}
    return ObjectRef(
        API_VERSION,
        KIND,
        str(metadata.get("name") or ""),
        str(metadata.get("namespace") or "default"),
        str(metadata.get("uid") or ""),
    )


def _selected(nodes: Mapping[str, NodeView], selector: Mapping[str, str]) -> int:
    return sum(selector_matches(selector, node.labels) for node in nodes.values())


def _onload_running(snapshot: Snapshot, namespace: str, name: str) -> bool:
    """Whether any node runs (or is loading) this CR's Onload: it carries the KMM version label."""
    key = names.kmm_version_label(namespace, names.module_name(name))
    return any(key in node.labels for node in snapshot.nodes.values())


def _module_ready_nodes(nodes: Mapping[str, NodeView], namespace: str, name: str) -> int:
    """Nodes where KMM reports the onload module loaded: what keeps running while a spec is refused."""
    ready = names.kmm_ready_label(namespace, names.module_name(name))
    return sum(ready in node.labels for node in nodes.values())


def _me(onload: Onload, body: JsonObject) -> OnloadEntry:
    return OnloadEntry(
        onload.metadata.namespace,
        onload.metadata.name,
        onload.spec.selector,
        str((body.get("metadata") or {}).get("creationTimestamp") or ""),
    )


def _as_last_applied(manifest: JsonObject, live: JsonObject, last_applied: LastApplied | None) -> bool:
    """Whether the live child is still what this process last applied from the same manifest."""
    applied_hash = manifest["metadata"]["annotations"][names.APPLIED_HASH_ANNOTATION]
    resource_version = str((live.get("metadata") or {}).get("resourceVersion") or "")
    return last_applied == LastApplied(applied_hash, resource_version)


def _plan_valid(
    onload: Onload, snapshot: Snapshot, image: str, generation: int | None, now: str
) -> tuple[Observation, list[Action], list[PostEvent]]:
    namespace, name = onload.metadata.namespace, onload.metadata.name
    ref = _ref(snapshot.body)
    revisions = plan_revisions(onload, snapshot.children, snapshot.nodes)
    selector = onload.spec.selector
    rollout = plan_rollout(
        RolloutInput(
            namespace=namespace,
            name=name,
            onload=ref,
            target=revisions.target,
            revisions=revisions.registry,
            policy=onload.spec.upgrade,
            nodes=snapshot.nodes,
            selected=frozenset(n for n, view in snapshot.nodes.items() if selector_matches(selector, view.labels)),
            pods=snapshot.pods,
            now=_moment(now),
            eviction_blocks=snapshot.eviction_blocks,
            previous=(snapshot.body.get("status") or {}).get("upgrade"),
            may_take=recorded_registry(name, snapshot.children).get(revisions.target)
            == revisions.registry[revisions.target],
        )
    )
    nodes = plan_node_labels(
        namespace,
        name,
        revisions.target,
        sfc_nodes(revisions.registry[revisions.target], snapshot.nodes),
        selector,
        snapshot.nodes,
        rollout.owned,
        snapshot.device_plugin_nodes,
    )
    modules_held = takeover.modules_held(namespace, name, snapshot.nodes, nodes.patches)
    children = _plan_children(revisions, snapshot, image, modules_held)
    events: list[PostEvent] = []
    child_writes: list[Action] = []
    for apply in children.applies:
        key = child_key(apply.manifest)
        live = snapshot.children.get(key)
        if live is None or not _as_last_applied(apply.manifest, live, snapshot.last_applied.get(key)):
            child_writes.append(apply)
            events.append(apply_event(ref, apply))
        patch = takeover.module_selector_patch(apply, live)
        if patch is not None:
            child_writes.append(patch)
    child_writes += children.replaces
    events += [replace_event(ref, replace) for replace in children.replaces]
    events += [
        PostEvent(ref, NORMAL, RECREATING, f"deleting {d.kind} {d.name}: {children.why}", f"{d.kind}/{d.name}")
        for d in children.deletes
    ]
    summary = rollout.summary
    pending = summary is not None and not summary.complete
    upgrading = next((c for c in summary.conditions if c.type == UPGRADING), None) if summary else None
    plugin_daemonsets = daemonsets(snapshot)
    observation = Observation(
        generation,
        selected=nodes.selected,
        module_ready=nodes.module_ready,
        device_plugin_ready=plugins_ready(snapshot),
        children_present=not any(a.reason == MISSING for a in children.applies) and children.holdup is None,
        nodes_labelled=not nodes.labelling,
        version=_versions(revisions, snapshot.nodes, namespace, name, installing=bool(nodes.patches)),
        holdup=children.holdup
        or (Holdup(UPGRADING, upgrading.message) if pending and upgrading else None)
        or _applying(child_writes, plugin_daemonsets),
        outdated_device_plugin_pods=sum(
            max(_status_count(ds, "desiredNumberScheduled") - _status_count(ds, "updatedNumberScheduled"), 0)
            for ds in plugin_daemonsets
        ),
        errors=tuple(snapshot.recent_errors),
        upgrade=summary.status if summary else None,
        upgrade_conditions=summary.conditions if summary else (),
        rollout_pending=pending,
        rollout_waiting=rollout.waiting,
        modules_pending=tuple(nodes.modules_pending),
        plugins_pending=_plugins_pending(snapshot, namespace, name, selector),
    )
    events += node_events(ref, namespace, name, revisions.target, nodes.patches)
    events += rollout.events
    # Node-label patches and the upgrade's node patches form one parallel batch, then the upgrade's evictions.
    return observation, [*children.deletes, *child_writes, *nodes.patches, *rollout.actions], events


def _applying(child_writes: Sequence[Action], daemonsets: Sequence[JsonObject]) -> Holdup | None:
    """Children this plan writes, or a DaemonSet whose controller has not yet seen its latest spec: until a later
    pass observes them in effect, the status computed now cannot call the generation complete."""
    if child_writes:
        written = ", ".join(sorted({_written_name(action) for action in child_writes}))
        return Holdup(APPLYING, f"writing {written}; complete once the writes are observed to take effect")
    for ds in daemonsets:
        metadata, status = ds.get("metadata") or {}, ds.get("status") or {}
        generation = metadata.get("generation")
        if generation is not None and int(status.get("observedGeneration") or 0) < int(generation):
            return Holdup(APPLYING, f"the DaemonSet controller has not yet observed DaemonSet {metadata.get('name')}")
    return None


def _written_name(action: Action) -> str:
    if isinstance(action, ApplyChild):
        return f"{action.manifest['kind']} {action.manifest['metadata']['name']}"
    if isinstance(action, PatchChild | ReplaceSpec):
        return f"{action.kind} {action.name}"
    raise TypeError(f"not a child write: {action!r}")


def _plugins_pending(snapshot: Snapshot, namespace: str, name: str, selector: Mapping[str, str]) -> tuple[str, ...]:
    """Selected nodes whose gate label is set but whose device-plugin pod is not Ready (when the pods were read)."""
    ready = snapshot.device_plugin_ready_nodes
    if ready is None:
        return ()
    gate = names.onload_label(namespace, name)
    return tuple(
        node
        for node, view in sorted(snapshot.nodes.items())
        if gate in view.labels and selector_matches(selector, view.labels) and node not in ready
    )


def _moment(now: str) -> datetime:
    moment = parse_time(now)
    if moment is None:
        raise ValueError(f"not an RFC 3339 time: {now!r}")
    return moment


def _status_count(child: JsonObject, key: str) -> int:
    return int((child.get("status") or {}).get(key) or 0)


def _versions(
    revisions: Revisions, nodes: Mapping[str, NodeView], namespace: str, name: str, *, installing: bool
) -> str | None:
    """The Onload versions the nodes run (several during a rollout); the target's while the first nodes load it."""
    key = names.kmm_version_label(namespace, names.module_name(name))
    running = sorted({revisions.version(r) for node in nodes.values() if (r := node.labels.get(key))})
    if running:
        return ", ".join(running)
    return revisions.version(revisions.target) if installing else None


@dataclass(frozen=True)
class ChildrenPlan:
    applies: list[ApplyChild]
    deletes: list[DeleteChild]
    holdup: Holdup | None
    why: str = ""
    """Why the children in ``deletes`` go."""
    replaces: list[ReplaceSpec] = dataclasses.field(default_factory=list)
    """Children otherwise as desired whose spec holds fields other managers added."""


def _plan_children(revisions: Revisions, snapshot: Snapshot, image: str, modules_held: bool) -> ChildrenPlan:
    """Children to apply, and those to delete: DaemonSets of revisions no node runs any longer (and the single
    DaemonSet of earlier operators), the sfc Module once no node uses sfc."""
    manifests = render_children(revisions.deployment, image, module_tolerations=snapshot.module_tolerations)
    desired = {child_key(m) for m in manifests}
    obsolete = [
        (key, live)
        for key, live in sorted(snapshot.children.items())
        if key not in desired and _obsolete(key, live, revisions)
    ]
    applies: list[ApplyChild] = []
    replaces: list[ReplaceSpec] = []
    holdup: Holdup | None = None
    for manifest in manifests:
        key = child_key(manifest)
        live = snapshot.children.get(key)
        if live is not None and (live.get("metadata") or {}).get("deletionTimestamp"):
            # Applying to an object on its way out changes nothing: create it again once it is gone.
            holdup = Holdup(RECREATING, f"{key[0]} {key[1]} is being deleted; it is created again once it is gone")
            continue
        reason = apply_reason(manifest, live)
        if modules_held and key[0] == "Module" and reason != MISSING:
            continue
        if reason is None:
            managers = tuple(foreign_managers(manifest, live)) if live is not None else ()
            if managers:
                version = str(live["metadata"].get("resourceVersion") or "") if live is not None else ""
                replaces.append(ReplaceSpec(key[0], key[1], manifest["spec"], version, managers))
            continue
        if live is None and key[0] == "DaemonSet" and any(k[0] == "DaemonSet" for k, _ in obsolete):
            # Two device plugins on one node would fight over the kubelet socket: the old one goes first.
            holdup = Holdup(RECREATING, f"DaemonSet {key[1]} is created once the old device-plugin DaemonSet is gone")
            continue
        applies.append(ApplyChild(manifest, reason))
    deletes: list[DeleteChild] = []
    recorded = bool(recorded_registry(revisions.deployment.target.metadata.name, snapshot.children))
    why = (
        "no node runs its revision any longer, or it is the single device-plugin DaemonSet of an earlier operator "
        "(a pod on an unreachable node stays Terminating until the node returns or it is deleted with --force)"
    )
    going: Holdup | None = None
    for (kind, child), live in obsolete:
        if (live.get("metadata") or {}).get("deletionTimestamp"):
            going = going or Holdup(RECREATING, f"{kind} {child} is being deleted: {why}")
        elif recorded and not modules_held:
            # Only once the onload Module records the revisions: before, the old child may hold the only record.
            deletes.append(DeleteChild(kind, child, str(live["metadata"].get("uid") or "")))
            going = going or Holdup(RECREATING, f"deleting {kind} {child}: {why}")
        else:
            going = going or Holdup(RECREATING, f"{kind} {child} is deleted once the Modules record the revisions")
    holdup = going or holdup
    return ChildrenPlan(applies, deletes, holdup, why, replaces)


def _obsolete(key: ChildKey, live: JsonObject, revisions: Revisions) -> bool:
    """Whether a live child that is not rendered any longer must go."""
    kind, child = key
    name = revisions.deployment.target.metadata.name
    if kind == "Module":
        return child == names.sfc_module_name(name) and revisions.deployment.sfc is None
    revision = ((live.get("metadata") or {}).get("labels") or {}).get(names.REVISION_LABEL)
    # A DaemonSet of a revision some node runs but the registry lost is kept: its pods serve those nodes.
    return revision is None or revision not in revisions.present or revision in revisions.registry
