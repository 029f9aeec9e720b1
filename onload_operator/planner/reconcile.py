"""One reconcile of one Onload CR as a pure function: observed snapshot in, the writes to make out.

The plan lists only real changes (children that are missing, changed or drifted; node labels to set or remove;
a status that differs), so a converged CR plans nothing. Further planners (the node-by-node upgrade) add their
own steps by changing which Onload is deployed and which node labels move, without touching this pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onload_operator.api.v1alpha1 import Onload
from onload_operator.planner.checks import validate
from onload_operator.planner.compare import CHANGED, DRIFTED, MISSING, apply_reason, immutable_difference
from onload_operator.planner.conflicts import selector_conflict
from onload_operator.planner.deployed import effective_onload
from onload_operator.planner.nodes import NodeLabelPatch, plan_node_labels
from onload_operator.planner.snapshot import OnloadEntry, Snapshot, child_key, selector_matches
from onload_operator.planner.status import DEGRADED, READY, RECREATING, Observation, compute_status, condition_of
from onload_operator.render import names
from onload_operator.render.children import render_children

NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True)
class Apply:
    """Server-side apply of a child; ``reason`` is missing, changed or drifted."""

    manifest: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Recreate:
    """Delete the device-plugin DaemonSet, whose selector is immutable, pods first; a later reconcile creates
    it again. ``uid`` makes the delete a no-op when the object was already replaced by then."""

    name: str
    uid: str


@dataclass(frozen=True)
class EventSpec:
    type: str
    reason: str
    message: str


@dataclass
class Plan:
    observation: Observation
    applies: list[Apply] = field(default_factory=list)
    recreates: list[Recreate] = field(default_factory=list)
    node_patches: list[NodeLabelPatch] = field(default_factory=list)
    status: dict[str, Any] | None = None
    """The new status when it differs from the current one."""
    events: list[EventSpec] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return (
            len(self.applies)
            + len(self.recreates)
            + len(self.node_patches)
            + (self.status is not None)
            + len(self.events)
        )

    def status_only(self) -> Plan:
        """Only the status and its Events: what can still be reported when the other writes keep failing."""
        events = [e for e in self.events if e.reason not in {*_APPLY_EVENT_REASONS.values(), RECREATING}]
        return Plan(self.observation, status=self.status, events=events)


def _status_differs(computed: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    current = current or {}
    return any(current.get(key) != value for key, value in computed.items())


def _transition_events(previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> list[EventSpec]:
    """An Event whenever the Ready reason changes; a Warning when the CR is refused or degraded."""
    before, after = condition_of(previous, READY), condition_of(status, READY)
    if (before.get("status"), before.get("reason")) == (after.get("status"), after.get("reason")):
        return []
    degraded = condition_of(status, DEGRADED).get("status") == "True"
    return [EventSpec(WARNING if degraded else NORMAL, str(after["reason"]), str(after["message"]))]


def _selected(snapshot: Snapshot, selector: Mapping[str, str]) -> int:
    return sum(selector_matches(selector, labels) for labels in snapshot.nodes.values())


def _onload_running(snapshot: Snapshot, namespace: str, name: str) -> bool:
    """Whether any node runs (or is loading) this CR's Onload: it carries the KMM version label."""
    key = names.kmm_version_label(namespace, names.module_name(name))
    return any(key in labels for labels in snapshot.nodes.values())


def _module_ready_nodes(snapshot: Snapshot, namespace: str, name: str) -> int:
    """Nodes where KMM reports the onload module loaded: what keeps running while a spec is refused."""
    ready = names.kmm_ready_label(namespace, names.module_name(name))
    return sum(ready in labels for labels in snapshot.nodes.values())


def _device_plugin_status(snapshot: Snapshot, name: str) -> Mapping[str, Any]:
    daemonset = snapshot.children.get(("DaemonSet", names.device_plugin_name(name))) or {}
    status: Mapping[str, Any] = daemonset.get("status") or {}
    return status


def _me(onload: Onload, body: Mapping[str, Any]) -> OnloadEntry:
    return OnloadEntry(
        onload.metadata.namespace,
        onload.metadata.name,
        onload.spec.selector,
        str((body.get("metadata") or {}).get("creationTimestamp") or ""),
    )


def plan(snapshot: Snapshot, device_plugin_image: str, now: str) -> Plan:
    """Everything to write so that the cluster matches ``snapshot.body``."""
    body = snapshot.body
    metadata = body.get("metadata") or {}
    generation = metadata.get("generation")
    previous_status = body.get("status")
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
            selected=_selected(snapshot, selector),
            module_ready=_module_ready_nodes(snapshot, namespace, name),
            device_plugin_ready=int(_device_plugin_status(snapshot, name).get("numberReady") or 0),
            # What keeps running while the spec is refused.
            version=(previous_status or {}).get("version") if _onload_running(snapshot, namespace, name) else None,
        )
        result = Plan(observation)
    else:
        result = _plan_valid(onload, snapshot, device_plugin_image, generation)
    status = compute_status(result.observation, previous_status, now)
    if _status_differs(status, previous_status):
        result.status = status
        result.events = _transition_events(previous_status, status) + result.events
    return result


def _plan_valid(onload: Onload, snapshot: Snapshot, image: str, generation: int | None) -> Plan:
    namespace, name = onload.metadata.namespace, onload.metadata.name
    running = _onload_running(snapshot, namespace, name)
    effective, upgrade_pending = effective_onload(onload, snapshot.children, running)
    applies: list[Apply] = []
    recreating: str | None = None
    replaced: tuple[str, str] | None = None  # (uid, why) of a live DaemonSet whose immutable fields differ
    for manifest in render_children(effective, image):
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        live = _as_dict(snapshot.children.get(child_key(manifest)))
        if live is not None and (live.get("metadata") or {}).get("deletionTimestamp"):
            # Applying to an object on its way out changes nothing: create it again once it is gone.
            recreating = (
                f"{kind} {child} is being deleted and goes once its pods are gone (a pod on an unreachable node "
                "stays Terminating until the node returns or the pod is deleted with --force)"
            )
            continue
        difference = immutable_difference(manifest, live) if live is not None else None
        if live is not None and difference is not None:
            replaced = (str(live["metadata"]["uid"]), f"{kind} {child}: {difference}")
            continue
        reason = apply_reason(manifest, live)
        if reason is not None:
            applies.append(Apply(manifest, reason))
    component = effective.spec.onload
    nodes = plan_node_labels(
        namespace,
        name,
        component.version,
        effective.spec.uses_sfc,
        effective.spec.selector,
        snapshot.nodes,
        snapshot.device_plugin_nodes,
    )
    held = _modules_held(namespace, name, snapshot.nodes, nodes.patches)
    if held:
        applies = [a for a in applies if a.manifest["kind"] != "Module" or a.reason == MISSING]
    recreates = []
    if replaced is not None:
        uid, why = replaced
        if held or not _module_records_deployment(snapshot, name):
            # The DaemonSet may hold the only record of what the nodes run (adopted from the Go operator): it goes
            # only once the onload Module carries that record.
            recreating = f"{why}; it is deleted once the Modules are taken over"
        else:
            recreates.append(Recreate(names.device_plugin_name(name), uid))
            recreating = f"{why}; deleting it, its pods first, to create it again"
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
        upgrade_pending=upgrade_pending,
        recreating=recreating,
        outdated_device_plugin_pods=max(outdated, 0),
        errors=tuple(snapshot.recent_errors),
    )
    events = [EventSpec(NORMAL, _APPLY_EVENT_REASONS[a.reason], _apply_message(a)) for a in applies]
    if recreates:
        events.append(EventSpec(NORMAL, RECREATING, str(recreating)))
    events += _node_events(namespace, name, component.version, nodes.patches)
    return Plan(observation, applies=applies, recreates=recreates, node_patches=nodes.patches, events=events)


def _module_records_deployment(snapshot: Snapshot, name: str) -> bool:
    module = snapshot.children.get(("Module", names.module_name(name))) or {}
    return names.DEPLOYED_ANNOTATION in ((module.get("metadata") or {}).get("annotations") or {})


def _modules_held(
    namespace: str, name: str, nodes: Mapping[str, Mapping[str, str]], patches: list[NodeLabelPatch]
) -> bool:
    """Whether this plan gives the Module selector label to nodes that already carry a KMM version label.

    Those nodes may run modules of Modules that select something else (made by the Go operator, or by an earlier
    version of this one, which selected ``spec.selector``): a Module must not select the new label before they
    carry it, else KMM unloads the modules there. The adapter applies children before it patches nodes, so the
    Module applies wait for the next reconcile, which sees the labels (a lagging view only delays them further).
    """
    selector_key = names.module_selector_label(namespace, name)
    version_keys = names.node_label_keys(namespace, name)[:2]
    return any(
        patch.labels.get(selector_key) == "" and any(key in nodes.get(patch.node, {}) for key in version_keys)
        for patch in patches
    )


def _node_list(nodes: list[str], shown: int = 3) -> str:
    more = f" and {len(nodes) - shown} more" if len(nodes) > shown else ""
    return ", ".join(nodes[:shown]) + more


def _node_events(namespace: str, name: str, version: str, patches: list[NodeLabelPatch]) -> list[EventSpec]:
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
            events.append(EventSpec(NORMAL, reason, f"{text} {len(nodes)} nodes: {_node_list(nodes)}"))
    return events


_APPLY_EVENT_REASONS = {MISSING: "Created", CHANGED: "Updated", DRIFTED: "DriftRepaired"}


def _apply_message(apply: Apply) -> str:
    kind, name = apply.manifest["kind"], apply.manifest["metadata"]["name"]
    return {
        MISSING: f"created {kind} {name}",
        CHANGED: f"applied the new desired state of {kind} {name}",
        DRIFTED: f"reverted changes made by others to {kind} {name}",
    }[apply.reason]


def _as_dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)
