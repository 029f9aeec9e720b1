"""Two Onload CRs must not select the same node: the one created later is refused until that is fixed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from onload_operator.planner.snapshot import OnloadEntry, selector_matches
from onload_operator.render.validation import SELECTOR_CONFLICT, Problem

SHOWN_NODES = 3


def selector_conflict(
    me: OnloadEntry, onloads: Sequence[OnloadEntry], nodes: Mapping[str, Mapping[str, str]]
) -> Problem | None:
    """A problem naming the earlier CRs that select some of the nodes ``me`` selects, or None."""
    mine = [node for node, labels in sorted(nodes.items()) if selector_matches(me.selector, labels)]
    if not mine:
        return None
    messages = []
    for other in sorted(onloads, key=lambda entry: entry.precedence):
        if (other.namespace, other.name) == (me.namespace, me.name) or other.precedence >= me.precedence:
            continue
        shared = [node for node in mine if selector_matches(other.selector, nodes[node])]
        if shared:
            shown = ", ".join(shared[:SHOWN_NODES]) + (
                f" and {len(shared) - SHOWN_NODES} more" if len(shared) > SHOWN_NODES else ""
            )
            messages.append(f"Onload {other.namespace}/{other.name}, created earlier, also selects {shown}")
    if not messages:
        return None
    return Problem(SELECTOR_CONFLICT, "; ".join(messages) + ": make the selectors disjoint")
