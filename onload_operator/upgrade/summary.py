"""``status.upgrade`` and the Upgrading, UpgradeBlocked and UpgradeFailed conditions, from the nodes' states."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onload_operator.render import names
from onload_operator.upgrade.state import IN_PROGRESS, NodeUpgrade, Step

if TYPE_CHECKING:
    from onload_operator.upgrade.machine import RolloutInput

UPGRADING = "Upgrading"
UPGRADE_BLOCKED = "UpgradeBlocked"
UPGRADE_FAILED = "UpgradeFailed"
SHOWN_NODES = 3
"""Nodes named in a condition message before the rest are counted."""
LISTED_NODES = 50
"""Nodes listed in ``status.upgrade.nodes``."""


@dataclass(frozen=True)
class ConditionValue:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class Summary:
    status: dict[str, Any]
    """``status.upgrade``."""
    conditions: tuple[ConditionValue, ...]
    complete: bool
    """Every selected node runs the target (skipped nodes excepted)."""


def _named(items: list[str]) -> str:
    more = f"; and {len(items) - SHOWN_NODES} more" if len(items) > SHOWN_NODES else ""
    return "; ".join(items[:SHOWN_NODES]) + more


def summarize(
    given: RolloutInput,
    states: Mapping[str, NodeUpgrade],
    *,
    pending: Collection[str],
    skipped: Collection[str],
    running: Mapping[str, str],
    active: bool,
) -> Summary | None:
    """The rollout's status; None when no rollout ran before (``active``: nodes carried a state) or is needed."""
    target, previous = given.target, given.previous
    current = {n: s for n, s in states.items() if s.step != Step.SKIPPED}
    if previous is None and not active and not current and not pending:
        return None
    in_progress = sorted(n for n, s in current.items() if s.step in IN_PROGRESS)
    failed = sorted(n for n, s in current.items() if s.step == Step.FAILED)
    done = sum(1 for n, revision in running.items() if revision == target and n not in current)
    total = len(given.selected)
    if previous is not None and previous.get("to") == target and previous.get("from"):
        source = str(previous["from"])
    else:
        sources = {r for r in running.values() if r and r != target} | {s.source for s in current.values() if s.source}
        source = ", ".join(sorted(sources - {target}))
    blocked = sorted(n for n in in_progress if current[n].step == Step.EVICT_PODS and n in given.eviction_blocks)
    if not in_progress and not failed and not pending:
        phase = "Complete"
    elif len(failed) >= given.policy.max_failures:
        phase = "Failed"
    elif given.policy.paused:
        phase = "Paused"
    elif blocked:
        phase = "Blocked"
    else:
        phase = "Progressing"
    status = {
        "from": source,
        "to": target,
        "phase": phase,
        "progress": f"{done}/{total}",
        "total": total,
        "done": done,
        "inProgress": len(in_progress),
        "failed": len(failed),
        "skipped": len(skipped),
        "pending": len(pending),
        "nodes": [
            {
                "name": n,
                "step": current[n].step.value,
                "since": current[n].since,
                "attempts": current[n].attempt,
                "reason": current[n].reason,
            }
            for n in sorted(in_progress + failed)[:LISTED_NODES]
        ],
    }
    return Summary(status, _conditions(status, current, blocked, failed), phase == "Complete")


def _conditions(
    status: Mapping[str, Any], states: Mapping[str, NodeUpgrade], blocked: list[str], failed: list[str]
) -> tuple[ConditionValue, ...]:
    phase, source, target = status["phase"], status["from"], status["to"]
    counts = f"{status['done']}/{status['total']} nodes run {target}"
    if phase == "Complete":
        skipped = f" ({status['skipped']} skipped after eviction timeouts)" if status["skipped"] else ""
        upgrading = ConditionValue(UPGRADING, "False", "Complete", f"{counts}{skipped}")
    elif phase == "Failed":
        upgrading = ConditionValue(UPGRADING, "False", "Failed", f"stopped after {len(failed)} failed nodes; {counts}")
    else:
        working = [f"{n}: {states[n].step.value}" for n in sorted(states) if states[n].step in IN_PROGRESS]
        detail = f"; in progress: {_named(working)}" if working else ""
        message = f"{source or '(none)'} -> {target}: {counts}, {status['pending']} pending{detail}"
        upgrading = ConditionValue(UPGRADING, "True", phase, message)
    if blocked:
        block = ConditionValue(
            UPGRADE_BLOCKED, "True", "EvictionBlocked", _named([f"{n}: {states[n].reason}" for n in blocked])
        )
    else:
        block = ConditionValue(UPGRADE_BLOCKED, "False", "NotBlocked", "no eviction is refused")
    if failed:
        reasons = _named([f"{n}: {states[n].reason}" for n in failed])
        fail = ConditionValue(
            UPGRADE_FAILED,
            "True",
            "NodesFailed",
            f"{reasons}. Failed nodes keep the taint {names.UPGRADE_TAINT}. Retry a node with `kubectl annotate "
            f"node <node> {names.UPGRADE_ANNOTATION}-`; roll back by setting spec.onload back to what "
            f"{source or 'the nodes ran'} was.",
        )
    else:
        fail = ConditionValue(UPGRADE_FAILED, "False", "NoFailures", "no node failed")
    return (upgrading, block, fail)
