"""The node-label protocol of the Go operator, gated on KMM's report that the module is loaded.

For each node that matches ``spec.selector``:

1. ``kmm.node.kubernetes.io/version-module.<ns>.<name>-module=<version>`` together with
   ``kmm.onload.amd.com/<ns>.<name>=""``, the label the Modules select: KMM loads the onload Module there;
2. ``...<name>-sfcmod=<version>`` once the onload label carries the version (only when sfc is used);
3. ``onload.amd.com/<ns>.<name>=<version>`` (the gate of the device-plugin DaemonSet) once KMM reports the
   module(s) loaded (``kmm.node.kubernetes.io/<ns>.<name>-module.ready``). The Go operator set it at once.

Labels that already carry another version are left alone: replacing them is the node-by-node upgrade.

A node that stops matching first loses the gate label, so that the DaemonSet stops the device plugin there (its
preStop removes the Onload files from the host); only once no device-plugin pod is left on the node do the KMM
version labels and the Module selector label go, which unloads the modules. The Go operator removed all at once,
and its Modules selected ``spec.selector``, so KMM unloaded them the moment the node stopped matching.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from onload_operator.planner.snapshot import selector_matches
from onload_operator.render import names


@dataclass(frozen=True)
class NodeLabelPatch:
    """Labels to set on one node; a None value removes the label."""

    node: str
    labels: Mapping[str, str | None]


@dataclass(frozen=True)
class NodePlan:
    selected: int = 0
    module_ready: int = 0
    patches: list[NodeLabelPatch] = field(default_factory=list)
    labelling: int = 0
    """Selected nodes whose labels are still being set (cleanup of other nodes does not count)."""


def plan_node_labels(
    namespace: str,
    name: str,
    version: str,
    uses_sfc: bool,
    selector: Mapping[str, str],
    nodes: Mapping[str, Mapping[str, str]],
    device_plugin_nodes: Collection[str] | None = None,
) -> NodePlan:
    """Label changes for every node; ``device_plugin_nodes`` are the nodes with a device-plugin pod (None: unknown).

    Without that knowledge no KMM label is removed from a node that stops matching.
    """
    onload_key, sfc_key, gate_key, selector_key = names.node_label_keys(namespace, name)
    onload_ready = names.kmm_ready_label(namespace, names.module_name(name))
    sfc_ready = names.kmm_ready_label(namespace, names.sfc_module_name(name))
    selected = module_ready = labelling = 0
    patches = []
    for node, labels in sorted(nodes.items()):
        changes: dict[str, str | None] = {}
        kmm_labelled = onload_key in labels or sfc_key in labels
        if selector_matches(selector, labels):
            selected += 1
            if selector_key not in labels:
                changes[selector_key] = ""
            onload_version = labels.get(onload_key)
            if onload_version is None:
                changes[onload_key] = onload_version = version
            if uses_sfc and sfc_key not in labels and onload_version == version:
                changes[sfc_key] = version
            loaded = onload_ready in labels and (not uses_sfc or sfc_ready in labels)
            module_ready += loaded
            if gate_key not in labels and loaded and labels.get(onload_key) == version:
                changes[gate_key] = version
            labelling += bool(changes)
        elif gate_key in labels:
            changes = {gate_key: None}
            if kmm_labelled and selector_key not in labels:
                changes[selector_key] = ""  # taken over mid-way: the modules stay while the device plugin stops
        elif not kmm_labelled:
            if selector_key in labels:
                changes = {selector_key: None}  # nothing is loaded without a version label
        elif device_plugin_nodes is not None and node not in device_plugin_nodes:
            changes = {key: None for key in (onload_key, sfc_key, selector_key) if key in labels}
        elif selector_key not in labels and (onload_ready in labels or sfc_ready in labels):
            changes = {selector_key: ""}  # taken over mid-way: keep the loaded modules until the plugin is gone
        if changes:
            patches.append(NodeLabelPatch(node, changes))
    return NodePlan(selected, module_ready, patches, labelling)


def nodes_leaving(
    namespace: str, name: str, selector: Mapping[str, str], nodes: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Nodes that no longer match but keep KMM labels of the CR: their device-plugin pods must be known."""
    onload_key, sfc_key, gate_key, _ = names.node_label_keys(namespace, name)
    return [
        node
        for node, labels in sorted(nodes.items())
        if not selector_matches(selector, labels)
        and gate_key not in labels
        and (onload_key in labels or sfc_key in labels)
    ]


def removal_patches(namespace: str, name: str, nodes: Mapping[str, Mapping[str, str]]) -> list[NodeLabelPatch]:
    """Remove every label of one CR from the nodes carrying any (on deletion of the CR)."""
    keys = names.node_label_keys(namespace, name)
    patches = []
    for node, labels in sorted(nodes.items()):
        present = {key: None for key in keys if key in labels}
        if present:
            patches.append(NodeLabelPatch(node, present))
    return patches


def orphaned_gate_labels(labels: Mapping[str, str], existing: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """(namespace, name) of the CRs whose gate or Module selector label the node carries although no such CR exists.

    Those keys are ``onload.amd.com/<namespace>.<name>`` and ``kmm.onload.amd.com/<namespace>.<name>``; a namespace
    has no dots, so it ends at the first. Only nodes that also carry the CR's KMM version label count, so that other
    labels under the prefixes are kept.
    """
    orphans: dict[tuple[str, str], None] = {}
    for key in labels:
        for prefix in (names.ONLOAD_LABEL_PREFIX, names.MODULE_SELECTOR_LABEL_PREFIX):
            if not key.startswith(prefix):
                continue
            namespace, dot, name = key[len(prefix) :].partition(".")
            onload_key = names.kmm_version_label(namespace, names.module_name(name))
            if dot and name and (namespace, name) not in existing and onload_key in labels:
                orphans[(namespace, name)] = None
    return list(orphans)


def crs_to_wake(
    labels: Mapping[str, str], selectors: Mapping[tuple[str, str], Mapping[str, str]]
) -> list[tuple[str, str]]:
    """The CRs a node event concerns: those whose selector matches the node, or whose labels it carries."""
    return [
        key
        for key, selector in sorted(selectors.items())
        if selector_matches(selector, labels) or any(k in labels for k in names.node_label_keys(*key))
    ]
