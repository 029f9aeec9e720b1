"""Two Onload CRs must never run Onload on the same node: each node belongs to at most one CR.

A node carrying the labels of an Onload CR (its KMM version, gate or Module selector labels, or KMM's report that
its module is loaded) belongs to that CR. A node carrying none belongs to the earliest CR whose selector matches
it. If both CRs' labels are on a node, the earlier CR keeps it. A CR whose selector matches a node that belongs to
another CR is refused as a whole (``SelectorConflict``) and writes nothing until that is fixed, whichever of the two
was created first: so editing an older CR's selector over nodes where a newer one runs refuses the older one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from onload_operator.observed import NodeView
from onload_operator.planner.checks import SELECTOR_CONFLICT, Problem
from onload_operator.planner.snapshot import OnloadEntry, selector_matches
from onload_operator.render import names

SHOWN_NODES = 3


def _holds(entry: OnloadEntry, labels: Mapping[str, str]) -> bool:
    """Whether the node carries a label that says Onload of ``entry`` runs there, or is still being removed."""
    keys = (
        *names.node_label_keys(entry.namespace, entry.name),
        names.kmm_ready_label(entry.namespace, names.module_name(entry.name)),
        names.kmm_ready_label(entry.namespace, names.sfc_module_name(entry.name)),
    )
    return any(key in labels for key in keys)


def node_owner(
    me: OnloadEntry, others: Sequence[OnloadEntry], labels: Mapping[str, str]
) -> tuple[OnloadEntry, bool] | None:
    """The other CR a node ``me`` selects belongs to, and whether that CR's labels are on it; None if it is mine."""
    holders = sorted((other for other in others if _holds(other, labels)), key=lambda entry: entry.precedence)
    if _holds(me, labels):
        earlier = [other for other in holders if other.precedence < me.precedence]
        return (earlier[0], True) if earlier else None
    if holders:
        return holders[0], True
    earlier = sorted(
        (other for other in others if other.precedence < me.precedence and selector_matches(other.selector, labels)),
        key=lambda entry: entry.precedence,
    )
    return (earlier[0], False) if earlier else None


def selector_conflict(me: OnloadEntry, onloads: Sequence[OnloadEntry], nodes: Mapping[str, NodeView]) -> Problem | None:
    """A problem naming the CRs that the nodes ``me`` selects belong to, or None when they are all its own."""
    others = [other for other in onloads if (other.namespace, other.name) != (me.namespace, me.name)]
    # (precedence of the owner, whether its labels are on the nodes) -> the nodes
    taken: dict[tuple[tuple[str, str, str], bool], list[str]] = {}
    for node, view in sorted(nodes.items()):
        if not selector_matches(me.selector, view.labels):
            continue
        owner = node_owner(me, others, view.labels)
        if owner is not None:
            taken.setdefault((owner[0].precedence, owner[1]), []).append(node)
    if not taken:
        return None
    messages = []
    for ((_, namespace, name), running), shared in sorted(taken.items(), key=lambda item: (item[0][0], not item[0][1])):
        shown = ", ".join(shared[:SHOWN_NODES]) + (
            f" and {len(shared) - SHOWN_NODES} more" if len(shared) > SHOWN_NODES else ""
        )
        if running:
            messages.append(f"Onload {namespace}/{name} runs on {shown}")
        else:
            messages.append(f"Onload {namespace}/{name}, created earlier, also selects {shown}")
    return Problem(SELECTOR_CONFLICT, "; ".join(messages) + ": make the selectors disjoint")
