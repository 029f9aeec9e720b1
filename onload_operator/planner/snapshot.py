"""What one reconcile of one CR sees: the CR, the nodes, every Onload CR's selector and the CR's live children."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from onload_operator.observed import NodeView, PodView
from onload_operator.planner.checks import Problem
from onload_operator.render import names

JsonObject = Mapping[str, Any]
"""An API object as served (read only)."""
ChildKey = tuple[str, str]
"""(kind, name) of a child in the CR's namespace."""


@dataclass(frozen=True)
class OnloadEntry:
    """An Onload CR as the selector-conflict check needs it."""

    namespace: str
    name: str
    selector: Mapping[str, str]
    created: str = ""

    @property
    def precedence(self) -> tuple[str, str, str]:
        """Earlier CRs win a conflict; ties break by namespace and name."""
        return (self.created, self.namespace, self.name)


class LastApplied(NamedTuple):
    """What this operator process last applied to a child, and the resourceVersion the apply returned."""

    applied_hash: str
    resource_version: str


@dataclass(frozen=True)
class Snapshot:
    body: JsonObject
    nodes: Mapping[str, NodeView]
    """Every node of the cluster, by name."""
    onloads: Sequence[OnloadEntry] = ()
    children: Mapping[ChildKey, JsonObject] = field(default_factory=dict)
    last_applied: Mapping[ChildKey, LastApplied] = field(default_factory=dict)
    """A child still at the resourceVersion of its last apply of the same manifest is not applied again, even where
    the server normalised a field its own way (so that ``compare.contains`` finds it drifted)."""
    recent_errors: Sequence[Problem] = ()
    """The failures of the reconciles of this CR since the last success, when they are to be reported."""
    device_plugin_nodes: frozenset[str] | None = None
    device_plugin_ready_nodes: frozenset[str] | None = None
    """Nodes with a Ready device-plugin pod of this CR, when some are missing (see ``plugins_missing``)."""
    """Nodes with a device-plugin pod of this CR, when nodes are leaving (see planner.nodes.nodes_leaving)."""
    pods: Mapping[str, Sequence[PodView]] = field(default_factory=dict)
    """Every pod of each node whose upgrade step waits on pods (``upgrade.needs_pods``); no other pod is read."""
    eviction_blocks: Mapping[str, str] = field(default_factory=dict)
    """Node → the API's answer to the last eviction it refused there (it names the PodDisruptionBudget)."""
    module_tolerations: bool = True
    """Whether the installed KMM's Module has ``spec.tolerations`` (KMM 2.3 and later); True when unknown."""


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based map selector, as a Module's or a DaemonSet's nodeSelector; an empty selector matches none."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def child_key(manifest: JsonObject) -> ChildKey:
    return (str(manifest["kind"]), str(manifest["metadata"]["name"]))


def daemonsets(snapshot: Snapshot) -> list[JsonObject]:
    """The CR's device-plugin DaemonSets: one per revision, or the single one of earlier operators."""
    return [child for (kind, _), child in snapshot.children.items() if kind == "DaemonSet"]


def plugins_ready(snapshot: Snapshot) -> int:
    """Nodes with a Ready device-plugin pod, whichever revision's DaemonSet runs it."""
    return sum(int((ds.get("status") or {}).get("numberReady") or 0) for ds in daemonsets(snapshot))


def plugins_missing(namespace: str, name: str, snapshot: Snapshot) -> bool:
    """Whether fewer device-plugin pods are Ready than nodes carry the gate label: the status then names those
    nodes, from one read of the CR's device-plugin pods."""
    gate = names.onload_label(namespace, name)
    gated = sum(1 for node in snapshot.nodes.values() if gate in node.labels)
    return plugins_ready(snapshot) < gated
