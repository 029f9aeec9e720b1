"""The node-label protocol, gated on KMM's report that the module is loaded, written as transition tables.

For each node that matches ``spec.selector`` (``JOINING``, every row that applies):

1. ``kmm.onload.amd.com/<ns>.<name>=""``, the label the Modules select, and
   ``kmm.node.kubernetes.io/version-module.<ns>.<name>-module=<version>``: KMM loads the onload Module there;
2. ``...<name>-sfcmod=<version>`` once the onload label carries the version (only when sfc is used);
3. ``onload.amd.com/<ns>.<name>=<version>`` (the gate of the device-plugin DaemonSet) once KMM reports the
   module(s) loaded (``kmm.node.kubernetes.io/<ns>.<name>-module.ready``).

Labels that already carry another version are left alone: replacing them is the node-by-node upgrade.

A node that stops matching (``LEAVING``, the first row that applies) first loses the gate label, so that the
DaemonSet stops the device plugin there (its preStop removes the Onload files from the host); only once no
device-plugin pod is left on the node do the KMM version labels and the Module selector label go, which unloads the
modules.

One writer per label: a node that carries ``names.UPGRADE_ANNOTATION`` belongs to the upgrade machine until it is
done, and no row here writes to it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from onload_operator.actions import PatchNode
from onload_operator.observed import NodeView
from onload_operator.planner.snapshot import selector_matches
from onload_operator.render import names
from onload_operator.upgrade.revisions import Record, uses_sfc_on
from onload_operator.upgrade.state import has_taint, state_of, upgrade_taint, without_taint

LabelChanges = dict[str, str | None]
"""Labels to set on one node; None removes one."""


@dataclass(frozen=True)
class NodeFacts:
    """What the label rules of one CR read of one node."""

    labels: Mapping[str, str]
    namespace: str
    name: str
    version: str
    uses_sfc: bool
    plugin_gone: bool
    """Known to run no device-plugin pod of the CR (never assumed when unknown)."""

    @property
    def onload_key(self) -> str:
        return names.kmm_version_label(self.namespace, names.module_name(self.name))

    @property
    def sfc_key(self) -> str:
        return names.kmm_version_label(self.namespace, names.sfc_module_name(self.name))

    @property
    def gate_key(self) -> str:
        return names.onload_label(self.namespace, self.name)

    @property
    def selector_key(self) -> str:
        return names.module_selector_label(self.namespace, self.name)

    @property
    def kmm_labelled(self) -> bool:
        return self.onload_key in self.labels or self.sfc_key in self.labels

    @property
    def module_reported(self) -> bool:
        """KMM reports the onload or the sfc module loaded."""
        return any(names.kmm_ready_label(self.namespace, m) in self.labels for m in self._modules)

    @property
    def modules_loaded(self) -> bool:
        """KMM reports every module of the CR loaded."""
        wanted = self._modules if self.uses_sfc else self._modules[:1]
        return all(names.kmm_ready_label(self.namespace, m) in self.labels for m in wanted)

    @property
    def _modules(self) -> tuple[str, str]:
        return names.module_name(self.name), names.sfc_module_name(self.name)


@dataclass(frozen=True)
class Transition:
    """One row of a table: when ``applies``, the node gets ``changes``."""

    step: str
    applies: Callable[[NodeFacts], bool]
    changes: Callable[[NodeFacts], LabelChanges]


JOINING: tuple[Transition, ...] = (
    Transition(
        "the Modules select the node",
        lambda n: n.selector_key not in n.labels,
        lambda n: {n.selector_key: ""},
    ),
    Transition(
        "KMM loads the onload module",
        lambda n: n.onload_key not in n.labels,
        lambda n: {n.onload_key: n.version},
    ),
    Transition(
        "KMM loads the sfc module, once the onload label carries the version",
        lambda n: n.uses_sfc and n.sfc_key not in n.labels and n.labels.get(n.onload_key, n.version) == n.version,
        lambda n: {n.sfc_key: n.version},
    ),
    Transition(
        "the device plugin starts, once KMM reports the modules loaded",
        lambda n: n.gate_key not in n.labels and n.modules_loaded and n.labels.get(n.onload_key) == n.version,
        lambda n: {n.gate_key: n.version},
    ),
    Transition(
        "a gate label edited by hand follows the modules the node runs again",
        lambda n: (
            n.modules_loaded
            and n.onload_key in n.labels
            and n.labels.get(n.gate_key, n.labels[n.onload_key]) != n.labels[n.onload_key]
        ),
        lambda n: {n.gate_key: n.labels[n.onload_key]},
    ),
)
"""A selected node: every row that applies."""

LEAVING: tuple[Transition, ...] = (
    Transition(
        "takeover: the device plugin stops while the modules stay",
        lambda n: n.gate_key in n.labels and n.kmm_labelled and n.selector_key not in n.labels,
        lambda n: {n.gate_key: None, n.selector_key: ""},
    ),
    Transition(
        "the device plugin stops",
        lambda n: n.gate_key in n.labels,
        lambda n: {n.gate_key: None},
    ),
    Transition(
        "nothing is loaded without a version label",
        lambda n: not n.kmm_labelled and n.selector_key in n.labels,
        lambda n: {n.selector_key: None},
    ),
    Transition(
        "no label of the CR",
        lambda n: not n.kmm_labelled,
        lambda n: {},
    ),
    Transition(
        "KMM unloads the modules, once no device-plugin pod is left",
        lambda n: n.plugin_gone,
        lambda n: {key: None for key in (n.onload_key, n.sfc_key, n.selector_key) if key in n.labels},
    ),
    Transition(
        "takeover: the loaded modules stay until the device plugin is gone",
        lambda n: n.selector_key not in n.labels and n.module_reported,
        lambda n: {n.selector_key: ""},
    ),
)
"""A node that does not match the selector: the first row that applies."""


def joining_changes(facts: NodeFacts) -> LabelChanges:
    changes: LabelChanges = {}
    for row in JOINING:
        if row.applies(facts):
            changes.update(row.changes(facts))
    return changes


def leaving_changes(facts: NodeFacts) -> LabelChanges:
    row = next((row for row in LEAVING if row.applies(facts)), None)
    return row.changes(facts) if row is not None else {}


@dataclass(frozen=True)
class NodePlan:
    selected: int = 0
    module_ready: int = 0
    patches: list[PatchNode] = field(default_factory=list)
    labelling: int = 0
    """Selected nodes whose labels are still being set (cleanup of other nodes does not count)."""
    modules_pending: list[str] = field(default_factory=list)
    """Selected nodes where KMM does not report every module of the CR loaded, by name."""


def sfc_nodes(record: Record, nodes: Mapping[str, NodeView]) -> frozenset[str]:
    """The nodes on which the revision ``record`` loads sfc: those whose kernel's mapping asks for it."""
    return frozenset(node for node, view in nodes.items() if uses_sfc_on(record, view.kernel_version))


def plan_node_labels(
    namespace: str,
    name: str,
    version: str,
    sfc_nodes: Collection[str],
    selector: Mapping[str, str],
    nodes: Mapping[str, NodeView],
    upgrading: Collection[str] = frozenset(),
    device_plugin_nodes: Collection[str] | None = None,
) -> NodePlan:
    """Label changes for every node but those in ``upgrading`` (owned by the upgrade machine); ``sfc_nodes`` are
    the nodes whose kernel's mapping asks for sfc; ``device_plugin_nodes`` are the nodes with a device-plugin pod
    (None: unknown).

    Without that knowledge no KMM label is removed from a node that stops matching.
    """
    selected = module_ready = labelling = 0
    patches = []
    modules_pending = []
    for node, view in sorted(nodes.items()):
        facts = NodeFacts(
            view.labels,
            namespace,
            name,
            version,
            node in sfc_nodes,
            plugin_gone=device_plugin_nodes is not None and node not in device_plugin_nodes,
        )
        matches = selector_matches(selector, view.labels)
        if matches:
            selected += 1
            module_ready += facts.modules_loaded
            if not facts.modules_loaded:
                modules_pending.append(node)
        if node in upgrading:
            continue
        changes = joining_changes(facts) if matches else leaving_changes(facts)
        labelling += matches and bool(changes)
        if changes:
            patches.append(PatchNode(node, labels=changes))
    return NodePlan(selected, module_ready, patches, labelling, modules_pending)


def nodes_leaving(namespace: str, name: str, selector: Mapping[str, str], nodes: Mapping[str, NodeView]) -> list[str]:
    """Nodes that no longer match but keep KMM labels of the CR: their device-plugin pods must be known."""
    onload_key, sfc_key, gate_key, _ = names.node_label_keys(namespace, name)
    return [
        node
        for node, view in sorted(nodes.items())
        if not selector_matches(selector, view.labels)
        and gate_key not in view.labels
        and (onload_key in view.labels or sfc_key in view.labels)
    ]


def removal_patches(namespace: str, name: str, nodes: Mapping[str, NodeView]) -> list[PatchNode]:
    """Remove every label of one CR from the nodes carrying any, and release the nodes its upgrade holds (state
    annotation and taint), on deletion of the CR."""
    keys = names.node_label_keys(namespace, name)
    taint = upgrade_taint(namespace, name)
    patches = []
    for node, view in sorted(nodes.items()):
        present: LabelChanges = {key: None for key in keys if key in view.labels}
        held = state_of(view, namespace, name) is not None
        tainted = has_taint(view, taint)
        if present or held or tainted:
            patches.append(
                PatchNode(
                    node,
                    labels=present,
                    annotations={names.UPGRADE_ANNOTATION: None} if held else {},
                    taints=without_taint(view, taint) if tainted else None,
                    resource_version=view.resource_version if tainted else None,
                )
            )
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
