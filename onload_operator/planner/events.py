"""The Events of one reconcile of one CR: what a person reading ``kubectl describe onload`` is told happened."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onload_operator.actions import ApplyChild, ObjectRef, PatchNode, PostEvent, ReplaceSpec
from onload_operator.planner.compare import CHANGED, DRIFTED, MISSING
from onload_operator.planner.status import DEGRADED, READY, condition_of
from onload_operator.render import names

NORMAL = "Normal"
WARNING = "Warning"


def transition_events(ref: ObjectRef, previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> list[PostEvent]:
    """An Event whenever the Ready reason changes; when the CR is refused or degraded, a Warning that says why (the
    Degraded condition: a missing KMM rather than node counts that nothing is changing)."""
    before, after = condition_of(previous, READY), condition_of(status, READY)
    if (before.get("status"), before.get("reason")) == (after.get("status"), after.get("reason")):
        return []
    degraded = condition_of(status, DEGRADED)
    if degraded.get("status") == "True":
        return [PostEvent(ref, WARNING, str(degraded["reason"]), str(degraded["message"]))]
    return [PostEvent(ref, NORMAL, str(after["reason"]), str(after["message"]))]


def _node_list(nodes: list[str], shown: int = 3) -> str:
    more = f" and {len(nodes) - shown} more" if len(nodes) > shown else ""
    return ", ".join(nodes[:shown]) + more


def node_events(ref: ObjectRef, namespace: str, name: str, version: str, patches: list[PatchNode]) -> list[PostEvent]:
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


def apply_event(ref: ObjectRef, apply: ApplyChild) -> PostEvent:
    """The Event of a child written (applied, or patched in place of the apply)."""
    kind, name, reason = apply.manifest["kind"], apply.manifest["metadata"]["name"], apply.reason
    message = {
        MISSING: f"created {kind} {name}",
        CHANGED: f"applied the new desired state of {kind} {name}",
        DRIFTED: f"reverted changes made by others to {kind} {name}",
    }[reason]
    return PostEvent(ref, NORMAL, _APPLY_EVENT_REASONS[reason], message, f"{kind}/{name}")


def replace_event(ref: ObjectRef, replace: ReplaceSpec) -> PostEvent:
    """The Event of a child whose spec was replaced to remove the fields other managers added."""
    message = f"removed from {replace.kind} {replace.name} the fields that {', '.join(replace.managers)} added"
    return PostEvent(ref, NORMAL, _APPLY_EVENT_REASONS[DRIFTED], message, f"{replace.kind}/{replace.name}")
