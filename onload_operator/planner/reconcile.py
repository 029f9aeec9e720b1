"""The plan of one reconcile of one CR, as a pure function: the observed snapshot in, the ordered writes out.

The plan lists only real changes (children that are missing, changed or drifted; node labels to set or remove;
a status that differs), so a converged CR plans nothing. Its actions run in order: children deleted, children
written, node labels, the status, then Events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from onload_operator.actions import (
    Action,
    ApplyChild,
    DeleteChild,
    ObjectRef,
    PatchNode,
    PatchStatus,
    PostEvent,
)
from onload_operator.api.v1alpha1 import API_VERSION, KIND, Onload
from onload_operator.observed import NodeView
from onload_operator.planner import takeover
from onload_operator.planner.checks import validate
from onload_operator.planner.compare import CHANGED, DRIFTED, MISSING, apply_reason
from onload_operator.planner.conflicts import selector_conflict
from onload_operator.planner.deployed import effective_onload
from onload_operator.planner.nodes import plan_node_labels, upgrade_owned
from onload_operator.planner.snapshot import JsonObject, LastApplied, OnloadEntry, Snapshot, child_key, selector_matches
from onload_operator.planner.status import (
    DEGRADED,
    READY,
    RECREATING,
    Holdup,
    Observation,
    compute_status,
    condition_of,
)
from onload_operator.render import names
from onload_operator.render.children import render_children

NORMAL = "Normal"
WARNING = "Warning"

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
            device_plugin_ready=int(_device_plugin_status(snapshot, name).get("numberReady") or 0),
            # What keeps running while the spec is refused.
            version=(body.get("status") or {}).get("version") if _onload_running(snapshot, namespace, name) else None,
        )
        return _with_status(body, observation, [], [], now)
    observation, writes, events = _plan_valid(onload, snapshot, device_plugin_image, generation)
    return _with_status(body, observation, writes, events, now)


def failure_plan(body: JsonObject, observation: Observation, error: str, now: str) -> Plan:
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
    transitions = _transition_events(_ref(body), previous, status)
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


def _transition_events(
    ref: ObjectRef, previous: Mapping[str, Any] | None, status: Mapping[str, Any]
) -> list[PostEvent]:
    """An Event whenever the Ready reason changes; a Warning when the CR is refused or degraded."""
    before, after = condition_of(previous, READY), condition_of(status, READY)
    if (before.get("status"), before.get("reason")) == (after.get("status"), after.get("reason")):
        return []
    degraded = condition_of(status, DEGRADED).get("status") == "True"
    return [PostEvent(ref, WARNING if degraded else NORMAL, str(after["reason"]), str(after["message"]))]


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


def _device_plugin_status(snapshot: Snapshot, name: str) -> Mapping[str, Any]:
    daemonset = snapshot.children.get(("DaemonSet", names.device_plugin_name(name))) or {}
    status: Mapping[str, Any] = daemonset.get("status") or {}
    return status


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
    onload: Onload, snapshot: Snapshot, image: str, generation: int | None
) -> tuple[Observation, list[Action], list[PostEvent]]:
    namespace, name = onload.metadata.namespace, onload.metadata.name
    running = _onload_running(snapshot, namespace, name)
    effective, upgrade_pending = effective_onload(onload, snapshot.children, running)
    applies: list[ApplyChild] = []
    being_deleted: Holdup | None = None
    replaced: takeover.Replacement | None = None
    for manifest in render_children(effective, image):
        key = child_key(manifest)
        live = snapshot.children.get(key)
        if live is not None and (live.get("metadata") or {}).get("deletionTimestamp"):
            # Applying to an object on its way out changes nothing: create it again once it is gone.
            being_deleted = Holdup(
                RECREATING,
                f"{key[0]} {key[1]} is being deleted and goes once its pods are gone (a pod on an unreachable node "
                "stays Terminating until the node returns or the pod is deleted with --force)",
            )
            continue
        if live is not None and (found := takeover.replacement(manifest, live)) is not None:
            replaced = found
            continue
        reason = apply_reason(manifest, live)
        if reason is not None:
            applies.append(ApplyChild(manifest, reason))
    component = effective.spec.onload
    nodes = plan_node_labels(
        namespace,
        name,
        component.version,
        effective.spec.uses_sfc,
        effective.spec.selector,
        snapshot.nodes,
        upgrade_owned(snapshot.nodes),
        snapshot.device_plugin_nodes,
    )
    modules_held = takeover.modules_held(namespace, name, snapshot.nodes, nodes.patches)
    if modules_held:
        applies = [a for a in applies if a.manifest["kind"] != "Module" or a.reason == MISSING]
    ref = _ref(snapshot.body)
    events: list[PostEvent] = []
    child_writes: list[Action] = []
    for apply in applies:
        key = child_key(apply.manifest)
        live = snapshot.children.get(key)
        if live is None or not _as_last_applied(apply.manifest, live, snapshot.last_applied.get(key)):
            child_writes.append(apply)
            events.append(_apply_event(ref, apply))
        patch = takeover.module_selector_patch(apply, live)
        if patch is not None:
            child_writes.append(patch)
    deletes: list[DeleteChild] = []
    recreating = being_deleted
    if replaced is not None:
        delete, recreating = takeover.recreate_daemonset(name, replaced, modules_held, snapshot.children)
        if delete is not None:
            deletes.append(delete)
            events.append(PostEvent(ref, NORMAL, RECREATING, recreating.message))
    ds_status = _device_plugin_status(snapshot, name)
    outdated = int(ds_status.get("desiredNumberScheduled") or 0) - int(ds_status.get("updatedNumberScheduled") or 0)
    observation = Observation(
        generation,
        selected=nodes.selected,
        module_ready=nodes.module_ready,
        device_plugin_ready=int(ds_status.get("numberReady") or 0),
        children_present=not any(a.reason == MISSING for a in applies) and recreating is None,
        nodes_labelled=not nodes.labelling,
        version=component.version if running or nodes.patches else None,
        holdup=recreating or upgrade_pending,
        outdated_device_plugin_pods=max(outdated, 0),
        errors=tuple(snapshot.recent_errors),
    )
    events += _node_events(ref, namespace, name, component.version, nodes.patches)
    return observation, [*deletes, *child_writes, *nodes.patches], events


def _node_list(nodes: list[str], shown: int = 3) -> str:
    more = f" and {len(nodes) - shown} more" if len(nodes) > shown else ""
    return ", ".join(nodes[:shown]) + more


def _node_events(ref: ObjectRef, namespace: str, name: str, version: str, patches: list[PatchNode]) -> list[PostEvent]:
    """One Event per kind of node-label step in this reconcile, naming a few of the nodes."""
    module_key = names.kmm_version_label(namespace, names.module_name(name))
    gate_key = names.onload_label(namespace, name)
    steps = (
        ("LoadingModules", module_key, version, f"KMM loads Onload {version} on"),
        ("StartingDevicePlugin", gate_key, version, "the module is loaded; the device plugin starts on"),
        ("StoppingDevicePlugin", gate_key, None, "no longer selected; the device plugin stops on"),
        ("UnloadingModules", module_key, None, "no device plugin left; KMM unloads Onload from"),
    )
    events = []
    for reason, key, value, text in steps:
        nodes = [p.node for p in patches if key in p.labels and p.labels[key] == value]
        if nodes:
            events.append(PostEvent(ref, NORMAL, reason, f"{text} {len(nodes)} nodes: {_node_list(nodes)}"))
    return events


_APPLY_EVENT_REASONS = {MISSING: "Created", CHANGED: "Updated", DRIFTED: "DriftRepaired"}


def _apply_event(ref: ObjectRef, apply: ApplyChild) -> PostEvent:
    """The Event of a child written (applied, or patched in place of the apply)."""
    kind, name, reason = apply.manifest["kind"], apply.manifest["metadata"]["name"], apply.reason
    message = {
        MISSING: f"created {kind} {name}",
        CHANGED: f"applied the new desired state of {kind} {name}",
        DRIFTED: f"reverted changes made by others to {kind} {name}",
    }[reason]
    return PostEvent(ref, NORMAL, _APPLY_EVENT_REASONS[reason], message)
