"""The executor: carries out a plan's ordered actions, one after the other.

Consecutive node patches run in parallel as one batch (each touches its own node); every other action runs alone,
in order. The first action that fails stops the run (its error is raised), so a later action never runs without
the earlier ones; except Events (best effort: logged) and evictions (their outcomes are returned, not raised).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from onload_operator.actions import (
    Action,
    ApplyChild,
    DeleteChild,
    DeletePod,
    EvictionResult,
    EvictPod,
    PatchChild,
    PatchNode,
    PatchStatus,
    PostEvent,
    ReplaceSpec,
)
from onload_operator.io.children import apply_child, delete_child, patch_child, replace_spec
from onload_operator.io.client import CONNECTIONS, Kube
from onload_operator.io.events import EventRecorder
from onload_operator.io.nodes import patch_node
from onload_operator.io.onloads import patch_status
from onload_operator.io.pods import delete_pod, evict_pod
from onload_operator.planner.snapshot import ChildKey, LastApplied
from onload_operator.render import names

log = logging.getLogger(__name__)

WRITE_WORKERS = CONNECTIONS // 2


@dataclass(frozen=True)
class Executed:
    """What a run of actions did."""

    writes: int
    """Write requests that changed something (or were meant to: a node patch of a node gone counts)."""
    evictions: tuple[EvictionResult, ...] = ()
    """The outcome of every EvictPod and DeletePod, in order."""


NODES, PODS, EVENTS = "nodes", "pods", "events"


def _batch_kind(action: Action) -> str | None:
    """Which parallel batch an action joins with its neighbours of the same kind; None runs it alone."""
    if isinstance(action, PatchNode):
        return NODES
    if isinstance(action, EvictPod | DeletePod):
        return PODS
    if isinstance(action, PostEvent):
        return EVENTS
    return None


class Executor:
    """Carries out actions for one operator process; thread-safe (reconciles of different CRs run in parallel)."""

    def __init__(self, kube: Kube, instance: str) -> None:
        self.kube = kube
        self.events = EventRecorder(kube, instance)
        """Posts the Events; ``instance`` is their reporting instance (the pod's name)."""
        self._pool = ThreadPoolExecutor(WRITE_WORKERS, thread_name_prefix="writes")
        self._lock = threading.Lock()
        self._applied: dict[tuple[str, str, str], LastApplied] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def last_applied(self, namespace: str) -> Mapping[ChildKey, LastApplied]:
        """What this process last applied to the children in ``namespace`` (see ``Snapshot.last_applied``)."""
        with self._lock:
            return {(kind, name): last for (ns, kind, name), last in self._applied.items() if ns == namespace}

    def run(self, namespace: str, name: str, actions: Sequence[Action]) -> Executed:
        """Carry out ``actions`` for the CR ``namespace/name`` (the owner of children, the status and Events).

        Consecutive node patches, consecutive evictions (and pod deletions) and consecutive Events each run as one
        parallel batch; every other action runs alone, in order.
        """
        writes = 0
        evictions: list[EvictionResult] = []
        for kind, group in itertools.groupby(actions, key=_batch_kind):
            batch = list(group)
            if kind == NODES:
                self._patch_nodes([a for a in batch if isinstance(a, PatchNode)])
                writes += len(batch)
            elif kind == PODS:
                results = list(self._pool.map(self._evict_or_delete, batch))
                evictions += results
                writes += len(results)
            elif kind == EVENTS:
                writes += sum(self._pool.map(lambda event: self._write(namespace, name, event), batch))
            else:
                writes += sum(self._write(namespace, name, action) for action in batch)
        return Executed(writes, tuple(evictions))

    def _evict_or_delete(self, action: Action) -> EvictionResult:
        if isinstance(action, EvictPod):
            return evict_pod(self.kube, action)
        if isinstance(action, DeletePod):
            return delete_pod(self.kube, action)
        raise TypeError(f"not a pod action: {action!r}")

    def _write(self, namespace: str, name: str, action: Action) -> int:
        if isinstance(action, ApplyChild):
            self._apply(action)
        elif isinstance(action, PatchChild):
            patch_child(self.kube, namespace, action)
        elif isinstance(action, ReplaceSpec):
            replace_spec(self.kube, namespace, action)
        elif isinstance(action, DeleteChild):
            return int(delete_child(self.kube, namespace, action))
        elif isinstance(action, PatchStatus):
            patch_status(self.kube, namespace, name, action.status)
        elif isinstance(action, PostEvent):
            try:
                return int(self.events.post(action))
            except ApiException as error:  # an Event is best effort: never fail a reconcile for it
                log.warning("could not post event %s: %s", action.reason, error.reason)
                return 0
        else:
            raise TypeError(f"not a single action: {action!r}")
        return 1

    def _apply(self, action: ApplyChild) -> None:
        metadata = action.manifest["metadata"]
        written = apply_child(self.kube, action)
        key = (metadata["namespace"], action.manifest["kind"], metadata["name"])
        last = LastApplied(
            metadata["annotations"][names.APPLIED_HASH_ANNOTATION],
            str(written["metadata"].get("resourceVersion") or ""),
        )
        with self._lock:
            self._applied[key] = last

    def _patch_nodes(self, patches: Sequence[PatchNode]) -> None:
        """Patch many nodes in parallel; raise the first error after all have been tried."""
        if len(patches) == 1:
            patch_node(self.kube, patches[0])
            return
        futures = [self._pool.submit(patch_node, self.kube, patch) for patch in patches]
        errors = [future.exception() for future in futures]
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first
