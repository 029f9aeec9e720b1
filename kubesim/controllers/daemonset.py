"""The DaemonSet controller: one daemon pod per eligible node, OnDelete and RollingUpdate, status counts.

Work is keyed by (DaemonSet, node) so that a node or pod event costs O(number of DaemonSets), not O(nodes).
Each DaemonSet keeps its per-node contribution to the status counts, so counts stay current without rescans.
Bound pods are created with ``spec.nodeName`` set directly (there is no scheduler), after the required node
affinity is replaced by a ``metadata.name`` term as the real controller does.
"""

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from kubesim.controllers.daemonset_pods import (
    REVISION_HASH_LABEL,
    controller_uid,
    creation_order,
    daemon_pod,
    max_unavailable,
    ready_since,
    template_hash,
)
from kubesim.controllers.runtime import (
    DelayQueue,
    Key,
    ResourceCache,
    WorkQueue,
    object_key,
)
from kubesim.controllers.scheduling import (
    has_untolerated_taint,
    matches_labels,
    matches_required_node_affinity,
    node_labels,
    with_daemon_pod_tolerations,
)
from kubesim.errors import ApiError
from kubesim.objects import is_pod_ready
from kubesim.objectstore import JsonObject, ObjectStore
from kubesim.resource_keys import DAEMONSETS, PODS

log = logging.getLogger(__name__)

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
FAILED_POD_BACKOFF_START = 1.0
FAILED_POD_BACKOFF_MAX = 900.0

STATUS_FIELDS = (
    "desiredNumberScheduled",
    "currentNumberScheduled",
    "numberMisscheduled",
    "numberReady",
    "numberAvailable",
    "updatedNumberScheduled",
)


@dataclass(frozen=True)
class _NodeView:
    """What one node contributes to a DaemonSet's status and rolling update."""

    desired: bool = False
    current: bool = False
    misscheduled: bool = False
    ready: bool = False
    available: bool = False
    updated: bool = False
    rollout_unavailable: bool = False
    old_available_pod: Key | None = None
    old_unavailable_pod: Key | None = None


@dataclass
class _DaemonSetState:
    key: Key
    uid: str
    revision_hash: str
    template_generation: int | None
    tolerations: list[JsonObject]
    """The template's tolerations plus those the controller adds to daemon pods."""
    nodes: dict[str, _NodeView] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_FIELDS, 0))
    rollout_unavailable: int = 0
    old_available: dict[str, Key] = field(default_factory=dict)

    def record(self, node_name: str, view: _NodeView) -> None:
        old = self.nodes.get(node_name, _NodeView())
        if view == _NodeView():
            self.nodes.pop(node_name, None)
        else:
            self.nodes[node_name] = view
        for name, attr in zip(
            STATUS_FIELDS, ("desired", "current", "misscheduled", "ready", "available", "updated"), strict=True
        ):
            self.totals[name] += int(getattr(view, attr)) - int(getattr(old, attr))
        self.rollout_unavailable += int(view.rollout_unavailable) - int(old.rollout_unavailable)
        if view.old_available_pod is None:
            self.old_available.pop(node_name, None)
        else:
            self.old_available[node_name] = view.old_available_pod


class DaemonSetController:
    """Keeps one pod per eligible node for every DaemonSet and writes their status counts."""

    def __init__(
        self,
        store: ObjectStore,
        nodes: ResourceCache,
        pods: ResourceCache,
        daemonsets: ResourceCache,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._store = store
        self._nodes = nodes
        self._pods = pods
        self._daemonsets = daemonsets
        self._states: dict[Key, _DaemonSetState] = {}
        self._uid_to_key: dict[str, Key] = {}
        self._pods_by_owner: dict[str, dict[str, dict[Key, JsonObject]]] = {}
        self._failed_backoff: dict[tuple[Key, str], tuple[float, float]] = {}
        self._work: WorkQueue[tuple[Key, str]] = WorkQueue(loop, self._sync_node, "daemonset nodes")
        self._finish: WorkQueue[Key] = WorkQueue(loop, self._finish_daemonset, "daemonset status")
        self._resyncs: DelayQueue[tuple[Key, str]] = DelayQueue(loop, self._work.add)
        for pod in pods.values():
            self._index_pod(None, pod)
        pods.add_handler(self._on_pod)
        nodes.add_handler(self._on_node)
        daemonsets.add_handler(self._on_daemonset)
        for ds in daemonsets.values():
            self._on_daemonset(None, ds)

    def stop(self) -> None:
        self._work.close()
        self._finish.close()
        self._resyncs.close()

    # Event handlers: only update indexes and queue work.

    def _on_daemonset(self, old: JsonObject | None, new: JsonObject | None) -> None:
        ds = new if new is not None else old
        assert ds is not None
        key = object_key(ds)
        if new is None:
            state = self._states.pop(key, None)
            if state is not None:
                self._uid_to_key.pop(state.uid, None)
            return
        uid = new["metadata"].get("uid", "")
        state = self._states.get(key)
        if state is None or state.uid != uid:
            if state is not None:
                self._uid_to_key.pop(state.uid, None)
            template = new["spec"].get("template") or {}
            state = _DaemonSetState(
                key,
                uid,
                template_hash(template),
                new["metadata"].get("generation"),
                with_daemon_pod_tolerations(template.get("spec") or {}),
            )
            self._states[key] = state
            self._uid_to_key[uid] = key
            self._sync_all_nodes(state)
        elif old is None or old.get("spec") != new.get("spec"):
            revision_hash = template_hash(new["spec"].get("template") or {})
            if revision_hash != state.revision_hash:
                state.revision_hash = revision_hash
                state.template_generation = new["metadata"].get("generation")
                state.tolerations = with_daemon_pod_tolerations(new["spec"]["template"].get("spec") or {})
            self._sync_all_nodes(state)
        else:
            self._finish.add(key)

    def _sync_all_nodes(self, state: _DaemonSetState) -> None:
        node_names = {name for _, name in self._nodes.object_keys()}
        node_names |= set(self._pods_by_owner.get(state.uid, {})) | set(state.nodes)
        for name in sorted(node_names):
            self._work.add((state.key, name))
        self._finish.add(state.key)

    def _on_node(self, old: JsonObject | None, new: JsonObject | None) -> None:
        node = new if new is not None else old
        assert node is not None
        unchanged = old is not None and new is not None and old.get("spec") == new.get("spec")
        if unchanged and old is not None and new is not None and node_labels(old) == node_labels(new):
            return
        name = node["metadata"]["name"]
        for key in self._states:
            self._observe_soon(key, name)

    def _on_pod(self, old: JsonObject | None, new: JsonObject | None) -> None:
        self._index_pod(old, new)
        for pod in (old, new):
            if pod is None:
                continue
            owner = controller_uid(pod)
            key = self._uid_to_key.get(owner or "")
            node_name = (pod.get("spec") or {}).get("nodeName")
            if key is not None and node_name:
                self._observe_soon(key, node_name)

    def _observe_soon(self, key: Key, node_name: str) -> None:
        """Update the counts now (so a rolling update never acts on stale ones) and queue the node's sync."""
        active = self._active(key)
        if active is not None:
            self._observe(*active, node_name)
            self._finish.add(key)
        self._work.add((key, node_name))

    def _index_pod(self, old: JsonObject | None, new: JsonObject | None) -> None:
        if old is not None:
            owner, node_name = controller_uid(old), (old.get("spec") or {}).get("nodeName") or ""
            if owner is not None:
                by_node = self._pods_by_owner.get(owner, {})
                on_node = by_node.get(node_name, {})
                on_node.pop(object_key(old), None)
                if not on_node:
                    by_node.pop(node_name, None)
                if not by_node:
                    self._pods_by_owner.pop(owner, None)
        if new is not None:
            owner, node_name = controller_uid(new), (new.get("spec") or {}).get("nodeName") or ""
            if owner is not None:
                self._pods_by_owner.setdefault(owner, {}).setdefault(node_name, {})[object_key(new)] = new

    # Work.

    def _active(self, key: Key) -> tuple[JsonObject, _DaemonSetState] | None:
        state = self._states.get(key)
        ds = self._daemonsets.get(key)
        if state is None or ds is None or ds["metadata"].get("deletionTimestamp"):
            return None
        return ds, state

    def _finish_daemonset(self, key: Key) -> None:
        """Roll (RollingUpdate) and write status; coalesced after a batch of node syncs."""
        active = self._active(key)
        if active is None:
            return
        ds, state = active
        if self._is_rolling_update(ds):
            self._roll(ds, state)
        self._write_status(ds, state)

    @staticmethod
    def _is_rolling_update(ds: JsonObject) -> bool:
        strategy = ds["spec"].get("updateStrategy") or {}
        return bool(strategy.get("type", "RollingUpdate") == "RollingUpdate")

    @staticmethod
    def _should_run(ds: JsonObject, state: _DaemonSetState, node: JsonObject) -> tuple[bool, bool]:
        """(should run a new pod here, should keep an existing pod here), as the real controller decides."""
        pod_spec = ds["spec"]["template"].get("spec") or {}
        wanted_node = pod_spec.get("nodeName")
        if wanted_node and wanted_node != node["metadata"]["name"]:
            return False, False
        if not matches_labels(pod_spec.get("nodeSelector"), node_labels(node)):
            return False, False
        if not matches_required_node_affinity(pod_spec.get("affinity"), node):
            return False, False
        if has_untolerated_taint(node, state.tolerations, ("NoSchedule", "NoExecute")):
            return False, not has_untolerated_taint(node, state.tolerations, ("NoExecute",))
        return True, True

    def _sync_node(self, item: tuple[Key, str]) -> None:
        """Create or delete the daemon pods of one node, then record what the node contributes."""
        key, node_name = item
        active = self._active(key)
        if active is None:
            return
        ds, state = active
        self._finish.add(key)
        node = self._nodes.get(("", node_name))
        if node is not None:
            pods = self._pods_on(state, node_name)
            live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
            should_run, should_continue = self._should_run(ds, state, node)
            if should_run and not pods:
                self._create_pod(ds, state, node_name)
            elif should_continue:
                for extra in self._remove_finished(key, node_name, live)[1:]:
                    self._delete_pod(extra)
            else:
                for pod in live:
                    self._delete_pod(pod)
        view = self._observe(ds, state, node_name)
        if view.old_unavailable_pod is not None and self._is_rolling_update(ds):
            stale = self._pods.get(view.old_unavailable_pod)
            if stale is not None:
                self._delete_pod(stale)

    def _pods_on(self, state: _DaemonSetState, node_name: str) -> list[JsonObject]:
        """The DaemonSet's pods bound to the node, oldest first."""
        return sorted(self._pods_by_owner.get(state.uid, {}).get(node_name, {}).values(), key=creation_order)

    def _observe(self, ds: JsonObject, state: _DaemonSetState, node_name: str) -> _NodeView:
        """Record the node's current contribution; cheap and write-free, so event handlers call it directly."""
        node = self._nodes.get(("", node_name))
        if node is None:  # pods of a deleted node count nowhere until pod GC removes them
            view = _NodeView()
        else:
            pods = self._pods_on(state, node_name)
            live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
            view = self._node_view(ds, state, node_name, self._should_run(ds, state, node)[0], pods, live)
        state.record(node_name, view)
        return view

    def _remove_finished(self, key: Key, node_name: str, live: list[JsonObject]) -> list[JsonObject]:
        """Delete failed (with back-off) and succeeded daemon pods; return the others."""
        running = []
        for pod in live:
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded":
                self._delete_pod(pod)
            elif phase == "Failed":
                delay, allowed_at = self._failed_backoff.get((key, node_name), (0.0, 0.0))
                now = time.monotonic()
                if now < allowed_at:
                    self._resyncs.add((key, node_name), allowed_at - now)
                    continue
                delay = min(max(delay * 2, FAILED_POD_BACKOFF_START), FAILED_POD_BACKOFF_MAX)
                self._failed_backoff[(key, node_name)] = (delay, now + delay)
                log.info("deleting failed daemon pod %s on node %s", pod["metadata"]["name"], node_name)
                self._delete_pod(pod)
            else:
                running.append(pod)
        return running

    def _node_view(
        self,
        ds: JsonObject,
        state: _DaemonSetState,
        node_name: str,
        should_run: bool,
        pods: list[JsonObject],
        live: list[JsonObject],
    ) -> _NodeView:
        if not should_run:
            return _NodeView(misscheduled=bool(pods))
        if not pods:
            return _NodeView(desired=True, rollout_unavailable=True)
        oldest = pods[0]
        ready = is_pod_ready(oldest)
        available = ready and self._is_available(ds, state.key, node_name, oldest)
        new = [pod for pod in live if pod["metadata"].get("labels", {}).get(REVISION_HASH_LABEL) == state.revision_hash]
        old = [pod for pod in live if pod not in new]
        old_available_pod: Key | None = None
        old_unavailable_pod: Key | None = None
        if len(new) + len(old) != 1:
            rollout_unavailable = True
        elif new:
            rollout_unavailable = not self._is_available(ds, state.key, node_name, new[0])
        else:
            rollout_unavailable = False
            if self._is_available(ds, state.key, node_name, old[0]):
                old_available_pod = object_key(old[0])
            else:
                old_unavailable_pod = object_key(old[0])
        return _NodeView(
            desired=True,
            current=True,
            ready=ready,
            available=available,
            updated=oldest["metadata"].get("labels", {}).get(REVISION_HASH_LABEL) == state.revision_hash,
            rollout_unavailable=rollout_unavailable,
            old_available_pod=old_available_pod,
            old_unavailable_pod=old_unavailable_pod,
        )

    def _is_available(self, ds: JsonObject, key: Key, node_name: str, pod: JsonObject) -> bool:
        since = ready_since(pod)
        if since is None:
            return False
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        if min_ready <= 0:
            return True
        remaining = since + min_ready - time.time()
        if remaining > 0:
            self._resyncs.add((key, node_name), remaining + 0.01)
            return False
        return True

    def _roll(self, ds: JsonObject, state: _DaemonSetState) -> None:
        """RollingUpdate without surge: replace old available pods while at most maxUnavailable nodes are
        unavailable. (Old pods that are not available are replaced at once, by the node sync.)"""
        budget = max_unavailable(ds, state.totals["desiredNumberScheduled"]) - state.rollout_unavailable
        for node_name in sorted(state.old_available):
            if budget <= 0:
                break
            pod = self._pods.get(state.old_available[node_name])
            if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                self._delete_pod(pod)
                self._observe(ds, state, node_name)
                budget -= 1

    def _write_status(self, ds: JsonObject, state: _DaemonSetState) -> None:
        status = dict(state.totals)
        status["numberUnavailable"] = max(status["desiredNumberScheduled"] - status["numberAvailable"], 0)
        generation = ds["metadata"].get("generation")
        if generation is not None:
            status["observedGeneration"] = generation
        current = ds.get("status") or {}
        if all(current.get(name, 0) == value for name, value in status.items()):
            return
        namespace, name = state.key
        try:
            updated = self._store.merge_patch(DAEMONSETS, namespace, name, {"status": status}, subresource="status")
        except ApiError as error:
            if error.code == 404:
                return
            raise
        self._daemonsets.observe(updated)

    # Writes.

    def _create_pod(self, ds: JsonObject, state: _DaemonSetState, node_name: str) -> None:
        pod = daemon_pod(ds, state.uid, state.revision_hash, state.template_generation, node_name)
        metadata = pod["metadata"]
        ds_name = ds["metadata"]["name"]
        for attempt in range(3):
            metadata["name"] = f"{ds_name}-{''.join(random.choices(NAME_ALPHABET, k=5))}"
            try:
                created = self._store.create(PODS, pod)
            except ApiError as error:
                if error.code == 409 and error.reason == "AlreadyExists" and attempt < 2:
                    continue
                raise
            self._pods.observe(created)
            return

    def _delete_pod(self, pod: JsonObject) -> None:
        namespace, name = object_key(pod)
        try:
            self._store.delete(PODS, namespace, name)
        except ApiError as error:
            if error.code != 404:
                raise
        self._pods.refresh((namespace, name))
