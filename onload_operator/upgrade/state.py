"""A node's upgrade state, kept on the Node in the annotation ``onload.amd.com/upgrade`` (JSON).

The annotation is written in the same patch as the side effect it announces (taint, gate label, KMM labels) or
before it (evictions), so after a crash the next reconcile knows exactly where the node stands. Times are
absolute (RFC 3339), so a deadline survives a restart of the operator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from onload_operator.observed import NodeView, Taint
from onload_operator.render import names

ANNOTATION = names.UPGRADE_ANNOTATION


class Step(StrEnum):
    """The per-node steps, in order, and the two resting states."""

    STOP_DEVICE_PLUGIN = "StopDevicePlugin"
    """Tainted, gate label removed: waiting until the device-plugin pod is gone."""
    EVICT_PODS = "EvictPods"
    """Evicting the pods that use Onload, until none is left."""
    LOAD_MODULES = "LoadModules"
    """KMM version labels moved to the target: waiting until KMM reports the modules loaded."""
    START_DEVICE_PLUGIN = "StartDevicePlugin"
    """Gate label set to the target: waiting until the new device-plugin pod is Ready."""
    FAILED = "Failed"
    """Stopped; the node keeps the taint until it is retried or the target changes."""
    SKIPPED = "Skipped"
    """Restored to what it ran after an eviction timeout (SkipNode); not taken again for the same target."""


IN_PROGRESS = (Step.STOP_DEVICE_PLUGIN, Step.EVICT_PODS, Step.LOAD_MODULES, Step.START_DEVICE_PLUGIN)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class NodeUpgrade:
    """The upgrade state of one node, for one Onload CR."""

    onload: str
    """``<namespace>/<name>`` of the CR whose upgrade owns the node."""
    source: str
    """Revision the node ran when it was taken."""
    target: str
    """Revision the node is moved to."""
    step: Step
    since: str
    """When the node entered ``step``."""
    attempt: int = 1
    reason: str = ""
    paused: str = ""
    """When the rollout was seen paused while the node was in a step; timeouts resume from there."""

    def encode(self) -> str:
        data = asdict(self)
        data["step"] = self.step.value
        return json.dumps({k: v for k, v in data.items() if v != ""}, sort_keys=True, separators=(",", ":"))

    def at(self, step: Step, now: datetime, reason: str = "") -> NodeUpgrade:
        """The state on entering ``step`` now."""
        return replace(self, step=step, since=format_time(now), reason=reason, paused="")

    def elapsed(self, now: datetime) -> float:
        """Seconds spent in the current step (a step with an unreadable time has just begun)."""
        since = parse_time(self.since)
        return 0.0 if since is None else max((now - since).total_seconds(), 0.0)


def decode(text: str) -> NodeUpgrade | None:
    """The state in an annotation value; None when it is not one (a hand-edited value is not trusted)."""
    try:
        data = json.loads(text)
        return NodeUpgrade(
            onload=str(data["onload"]),
            source=str(data["source"]),
            target=str(data["target"]),
            step=Step(data["step"]),
            since=str(data["since"]),
            attempt=max(int(data.get("attempt", 1)), 1),
            reason=str(data.get("reason", "")),
            paused=str(data.get("paused", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None


def owner_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def state_of(node: NodeView, namespace: str, name: str) -> NodeUpgrade | None:
    """The node's upgrade state when it belongs to this CR's upgrade."""
    text = node.annotations.get(ANNOTATION)
    state = decode(text) if text else None
    return state if state is not None and state.onload == owner_key(namespace, name) else None


def upgrade_taint(namespace: str, name: str) -> Taint:
    """The operator's own taint on a node it upgrades; its value names the CR."""
    return Taint(names.UPGRADE_TAINT, "NoSchedule", f"{namespace}.{name}")


def with_taint(node: NodeView, taint: Taint) -> tuple[Taint, ...]:
    """The node's taints plus ``taint``; every other taint (a cordon's, another CR's upgrade's) is kept as it is."""
    return (*without_taint(node, taint), taint)


def without_taint(node: NodeView, taint: Taint) -> tuple[Taint, ...]:
    return tuple(t for t in node.taints if t != taint)


def has_taint(node: NodeView, taint: Taint) -> bool:
    """Whether the node carries exactly this taint (its value names the CR: another CR's is not this one's)."""
    return taint in node.taints
