"""The writes the operator makes, as values: the planner and the upgrade machine return them in order, and the
I/O layer's executor carries them out one after the other.

Order matters: a node's upgrade state is persisted (``PatchNode``) before the side effect it announces, and the
executor stops at the first action that fails, so a later action never runs without the earlier ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from onload_operator.observed import Taint
from onload_operator.render.common import Manifest


@dataclass(frozen=True)
class ApplyChild:
    """Server-side apply of a child; ``reason`` is missing, changed or drifted."""

    manifest: Manifest
    reason: str


@dataclass(frozen=True)
class PatchChild:
    """Merge-patch a child (None removes a key): what server-side apply cannot do, such as removing a key of a map
    that another field manager owns."""

    kind: str
    name: str
    patch: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class ReplaceSpec:
    """Replace a child's whole spec (a JSON patch guarded by ``resource_version``): removes the fields other
    managers added, which server-side apply leaves in place."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    resource_version: str
    managers: tuple[str, ...]
    """The managers whose fields go."""


@dataclass(frozen=True)
class DeleteChild:
    """Delete a child, its dependents (pods) first, only if it is still the object ``uid`` observed."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class PatchNode:
    """Merge-patch a node's labels and annotations (None removes a key).

    With ``taints`` set, the node's whole ``spec.taints`` list is replaced; the patch then carries
    ``resource_version`` as a precondition, so a taint another actor added meanwhile is never lost (the write
    fails with a conflict and the next reconcile starts from the new object).
    """

    node: str
    labels: Mapping[str, str | None] = field(default_factory=dict)
    annotations: Mapping[str, str | None] = field(default_factory=dict)
    taints: tuple[Taint, ...] | None = None
    resource_version: str | None = None


@dataclass(frozen=True)
class EvictPod:
    """Ask the Eviction API to evict a pod (PodDisruptionBudgets apply); the outcome is reported, not raised."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class DeletePod:
    """Delete a pod outright (the upgrade policy ``onEvictionTimeout: Force``), if it is still ``uid``."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PatchStatus:
    """Merge-patch the CR's status subresource."""

    status: Mapping[str, Any]


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""


@dataclass(frozen=True)
class PostEvent:
    """A core/v1 Event; best effort: failing to post one never fails a reconcile.

    Repeats with the same object, type, reason and ``series`` update one Event (its count and latest message).
    """

    involved: ObjectRef
    type: str
    reason: str
    message: str
    series: str = ""
    """What tells repeats of one reason apart, such as the child an Event is about; empty: the reason alone."""


Action = (
    ApplyChild | PatchChild | ReplaceSpec | DeleteChild | PatchNode | EvictPod | DeletePod | PatchStatus | PostEvent
)


class EvictionOutcome(Enum):
    EVICTED = "evicted"
    GONE = "gone"
    """The pod no longer exists (or is another pod by now)."""
    BLOCKED = "blocked"
    """Refused for now (429), typically by a PodDisruptionBudget; the message names it."""


@dataclass(frozen=True)
class EvictionResult:
    pod: EvictPod | DeletePod
    outcome: EvictionOutcome
    message: str = ""
