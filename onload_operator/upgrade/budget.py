"""The rollout's budget: how many nodes may be taken now, and in which order."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from onload_operator.observed import NodeView


def max_unavailable(value: int | str, selected: int) -> int:
    """``maxUnavailable`` as a node count: a percentage of the selected nodes is rounded up; at least 1."""
    if isinstance(value, int):
        return max(value, 1)
    return max(math.ceil(selected * int(value.rstrip("%")) / 100), 1)


def unavailable(selected: Collection[str], nodes: Mapping[str, NodeView], owned: Collection[str]) -> int:
    """Selected nodes out of service: in the upgrade's hands (failed ones too), cordoned or NotReady."""
    return sum(1 for node in selected if node in owned or (node in nodes and not nodes[node].in_service))


def pick(
    candidates: Collection[str],
    nodes: Mapping[str, NodeView],
    *,
    in_progress: int,
    max_parallel: int,
    out_of_service: int,
    unavailable_budget: int,
) -> list[str]:
    """The candidates to take now: nodes already out of service first (taking them costs no availability), then
    by name; at most ``max_parallel`` in progress and ``unavailable_budget`` out of service."""
    order = sorted(candidates, key=lambda node: (nodes[node].in_service, node))
    taken = []
    for node in order:
        if in_progress >= max_parallel:
            break
        if nodes[node].in_service:
            if out_of_service >= unavailable_budget:
                break
            out_of_service += 1
        in_progress += 1
        taken.append(node)
    return taken
