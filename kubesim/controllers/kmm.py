"""Kernel Module Management: "loads" each ``Module`` on the nodes it targets by labelling them.

A node is targeted by a Module when its labels match ``spec.selector`` and its kernel
(``status.nodeInfo.kernelVersion`` without a trailing ``+``) matches a kernel mapping: the first mapping whose
``literal`` equals it or whose ``regexp`` matches it (an unanchored RE2 search, as Go's ``regexp.MatchString``;
a pattern RE2 rejects matches nothing).
With ``spec.moduleLoader.container.version`` set, the node's label
``kmm.node.kubernetes.io/version-module.<ns>.<name>`` decides, as in KMM v2's ordered upgrade:

- absent: the module is not loaded there (it is unloaded if it was);
- equal to the version: that version is loaded; a node running another version is unloaded, then loaded;
- another value: whatever is loaded stays as it is.

Loading takes ``kmm_load_delay`` seconds and sets ``kmm.node.kubernetes.io/<ns>.<name>.ready=""`` (plus
``kmm.node.kubernetes.io/<ns>.<name>.version.ready=<version>`` for versioned Modules); unloading takes
``kmm_unload_delay`` seconds and removes both labels. A load failure injected with ``fail_load(node, version)``
(every version when ``version`` is None) keeps that load from ever completing: the ready labels are not set, the
Module gets a Warning Event ``FailedLoad`` once per node and version, and (with worker pods) the worker pod ends
Failed; ``clear_load_failure`` lifts it. The Module status counts
``moduleLoader.{nodesMatchingSelectorNumber, desiredNumber, availableNumber}`` are kept current.

As KMM v2 does, a node with a ``NoSchedule`` or ``NoExecute`` taint that neither the Module's ``spec.tolerations``
nor KMM's own tolerations (disk, memory and PID pressure) tolerate is not a target: nothing is loaded or unloaded
there (whatever is loaded stays loaded) and it is left out of the status counts until the taint goes or is
tolerated.

With ``worker_pods`` each load or unload also runs a KMM v2 style worker pod ``kmm-worker-<node>-<module>`` in
the Module's namespace, labelled ``kmm.node.kubernetes.io/module.name=<module>``: it exists while the step is in
progress and is deleted (after being reported Succeeded) when the step is done; a failing load leaves a Failed
worker pod until the failure is lifted. Worker pods are not created for unloads after the Module is deleted.

Not emulated: NodeModulesConfig objects, image builds and signing, the device plugin DaemonSet, the admission
webhook and a finalizer on Modules.
"""

import asyncio
import logging
import secrets
from dataclasses import dataclass, field

from kubesim.controllers.kmm_module import (
    excluded_by_taints,
    kernel_mapping_for,
    module_version,
    modules_loaded_on,
    ready_label,
    version_label,
    version_ready_label,
    worker_pod,
    worker_pod_name,
)
from kubesim.controllers.runtime import DelayQueue, Key, ResourceCache, WorkQueue, object_key
from kubesim.controllers.scheduling import matches_labels, node_labels
from kubesim.errors import ApiError
from kubesim.objects import now_rfc3339
from kubesim.objectstore import JsonObject, ObjectStore
from kubesim.resource_keys import EVENTS, MODULES, NODES, PODS

log = logging.getLogger(__name__)


_ABSENT = None
WORKER_RETRY_DELAY = 0.05
"""Seconds before creating a worker pod again whose name is still taken by a terminating one."""
Pair = tuple[Key, str]
"""(Module key, node name)."""


@dataclass(frozen=True)
class _NodeCounts:
    matching: bool = False
    desired: bool = False
    available: bool = False


@dataclass
class _ModuleCounts:
    nodes: dict[str, _NodeCounts] = field(default_factory=dict)
    matching: int = 0
    desired: int = 0
    available: int = 0

    def record(self, node_name: str, counts: _NodeCounts) -> None:
        old = self.nodes.get(node_name, _NodeCounts())
        if counts == _NodeCounts():
            self.nodes.pop(node_name, None)
        else:
            self.nodes[node_name] = counts
        self.matching += int(counts.matching) - int(old.matching)
        self.desired += int(counts.desired) - int(old.desired)
        self.available += int(counts.available) - int(old.available)


class KmmController:
    """Loads and unloads Modules on nodes by label; ``fail_load`` injects load failures."""

    def __init__(
        self,
        store: ObjectStore,
        nodes: ResourceCache,
        modules: ResourceCache,
        loop: asyncio.AbstractEventLoop,
        load_delay: float,
        unload_delay: float,
        worker_pods: bool = False,
    ) -> None:
        self._store = store
        self._worker_pods = worker_pods
        self._workers: dict[Pair, tuple[str, str]] = {}
        self._nodes = nodes
        self._modules = modules
        self._load_delay = load_delay
        self._unload_delay = unload_delay
        self._failing: set[tuple[str, str | None]] = set()
        self._warned: set[tuple[Pair, str]] = set()
        self._planned: dict[Pair, tuple[str, str]] = {}
        self._counts: dict[Key, _ModuleCounts] = {}
        self._loaded: dict[Key, set[str]] = {}
        self._work: WorkQueue[Pair] = WorkQueue(loop, self._sync_pair, "kmm")
        self._status: WorkQueue[Key] = WorkQueue(loop, self._write_status, "kmm status")
        self._actions: DelayQueue[Pair] = DelayQueue(loop, self._act)
        for node in nodes.values():
            self._index_loaded(None, node)
        nodes.add_handler(self._on_node)
        modules.add_handler(self._on_module)
        for module in list(modules.values()):
            self._on_module(None, module)

    def stop(self) -> None:
        self._work.close()
        self._status.close()
        self._actions.close()

    def fail_load(self, node: str, version: str | None = None) -> None:
        """Make loads on the node fail: of that module version (``""`` for unversioned Modules), or of any
        version when ``version`` is None. The failure lasts until ``clear_load_failure``."""
        self._failing.add((node, version))
        self._resync_node(node)

    def clear_load_failure(self, node: str, version: str | None = None) -> None:
        """Lift the failure injected for that node and version (every failure on the node when None)."""

        def lifted(failing_node: str, failing_version: str | None) -> bool:
            return failing_node == node and version in (None, failing_version)

        self._failing = {entry for entry in self._failing if not lifted(*entry)}
        self._warned = {(pair, warned) for pair, warned in self._warned if not lifted(pair[1], warned)}
        self._resync_node(node)

    def _load_fails(self, node: str, version: str) -> bool:
        return (node, None) in self._failing or (node, version) in self._failing

    def _resync_node(self, node: str) -> None:
        for key in self._modules.object_keys():
            self._work.add((key, node))

    # Events.

    def _on_node(self, old: JsonObject | None, new: JsonObject | None) -> None:
        self._index_loaded(old, new)
        node = new if new is not None else old
        assert node is not None
        name = node["metadata"]["name"]
        affected = set(self._modules.object_keys())
        for current in (old, new):
            if current is not None:
                affected.update(modules_loaded_on(node_labels(current)))
        for key in affected:
            self._work.add((key, name))

    def _on_module(self, old: JsonObject | None, new: JsonObject | None) -> None:
        module = new if new is not None else old
        assert module is not None
        key = object_key(module)
        if (
            old is not None
            and new is not None
            and old.get("spec") == new.get("spec")
            and bool(old["metadata"].get("deletionTimestamp")) == bool(new["metadata"].get("deletionTimestamp"))
        ):
            self._status.add(key)
            return
        node_names = {name for _, name in self._nodes.object_keys()} | self._loaded.get(key, set())
        if new is None:
            self._counts.pop(key, None)
        for name in sorted(node_names):
            self._work.add((key, name))
        if new is not None:
            self._status.add(key)

    def _index_loaded(self, old: JsonObject | None, new: JsonObject | None) -> None:
        node = new if new is not None else old
        assert node is not None
        name = node["metadata"]["name"]
        before = set(modules_loaded_on(node_labels(old))) if old is not None else set()
        after = set(modules_loaded_on(node_labels(new))) if new is not None else set()
        for key in before - after:
            nodes = self._loaded.get(key)
            if nodes is not None:
                nodes.discard(name)
                if not nodes:
                    del self._loaded[key]
        for key in after - before:
            self._loaded.setdefault(key, set()).add(name)

    # Decisions.

    def _target(self, module: JsonObject | None, node: JsonObject, current: str | None) -> tuple[bool, str | None]:
        """(node matches the selector, version that should be loaded or None for unloaded)."""
        if module is None or module["metadata"].get("deletionTimestamp"):
            return False, _ABSENT
        labels = node_labels(node)
        if not matches_labels((module.get("spec") or {}).get("selector"), labels):
            return False, _ABSENT
        if not (module.get("spec") or {}).get("moduleLoader"):
            return True, _ABSENT
        kernel = ((node.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion") or ""
        if kernel_mapping_for(module, kernel) is None:
            return True, _ABSENT
        version = module_version(module)
        if not version:
            return True, ""
        namespace, name = object_key(module)
        node_version = labels.get(version_label(namespace, name))
        if node_version is None:
            return True, _ABSENT
        return True, version if node_version == version else current

    @staticmethod
    def _current(key: Key, module: JsonObject | None, labels: dict[str, str]) -> str | None:
        namespace, name = key
        if ready_label(namespace, name) not in labels:
            return _ABSENT
        if module is not None and not module_version(module):
            return ""
        return labels.get(version_ready_label(namespace, name), "")

    def _plan(self, pair: Pair) -> tuple[str, str] | None:
        """The next step for (Module, node): ("load" | "unload", version), ("fail", version) for a load on a
        failing node, or None when nothing is due."""
        key, node_name = pair
        node = self._nodes.get(("", node_name))
        module = self._modules.get(key)
        if node is None:
            self._record(key, node_name, _NodeCounts())
            return None
        if excluded_by_taints(module, node):
            self._record(key, node_name, _NodeCounts())
            return None
        labels = node_labels(node)
        current = self._current(key, module, labels)
        matching, target = self._target(module, node, current)
        if module is not None:
            self._record(
                key,
                node_name,
                _NodeCounts(
                    matching=matching,
                    desired=target is not _ABSENT,
                    available=target is not _ABSENT and current == target,
                ),
            )
        if current == target:
            return None
        if current is not _ABSENT:
            return ("unload", current)
        assert target is not None
        return ("fail" if self._load_fails(node_name, target) else "load", target)

    def _record(self, key: Key, node_name: str, counts: _NodeCounts) -> None:
        if self._modules.get(key) is None:
            return
        module_counts = self._counts.setdefault(key, _ModuleCounts())
        before = (module_counts.matching, module_counts.desired, module_counts.available)
        module_counts.record(node_name, counts)
        if (module_counts.matching, module_counts.desired, module_counts.available) != before:
            self._status.add(key)

    # Work.

    def _sync_pair(self, pair: Pair) -> None:
        action = self._plan(pair)
        if action is None or action[0] == "fail":
            self._planned.pop(pair, None)
            self._actions.discard(pair)
            if action is None:
                self._end_worker(pair)
            else:
                self._warn_failed_load(pair, action[1])
                self._start_worker(pair, action)
            return
        if self._planned.get(pair) == action and pair in self._actions:
            return
        self._planned[pair] = action
        self._start_worker(pair, action)
        self._actions.add(pair, self._load_delay if action[0] == "load" else self._unload_delay)

    def _act(self, pair: Pair) -> None:
        planned = self._planned.pop(pair, None)
        if planned is None or self._plan(pair) != planned:
            self._work.add(pair)
            return
        (namespace, name), node_name = pair
        verb, version = planned
        if verb == "load":
            patch: dict[str, str | None] = {ready_label(namespace, name): ""}
            if version:
                patch[version_ready_label(namespace, name)] = version
        else:
            patch = {ready_label(namespace, name): None, version_ready_label(namespace, name): None}
        try:
            updated = self._store.merge_patch(NODES, None, node_name, {"metadata": {"labels": patch}})
        except ApiError as error:
            if error.code != 404:
                log.info("kmm: %s of %s/%s on %s failed (%s), retrying", verb, namespace, name, node_name, error)
                self._planned[pair] = planned
                self._actions.add(pair, 0.1)
            return
        log.debug("kmm: %sed %s/%s %r on %s", verb, namespace, name, version, node_name)
        self._nodes.observe(updated)
        self._end_worker(pair, completed=True)
        self._work.add(pair)

    # Worker pods.

    def _start_worker(self, pair: Pair, action: tuple[str, str]) -> None:
        """Create the worker pod of a load or unload (a failing load's pod ends Failed and stays)."""
        if not self._worker_pods or self._workers.get(pair) == action:
            return
        self._end_worker(pair)
        (namespace, name), node_name = pair
        module = self._modules.get((namespace, name))
        node = self._nodes.get(("", node_name))
        if module is None or node is None:
            return
        pod = worker_pod(module, node, "unload" if action[0] == "unload" else "load")
        try:
            created = self._store.create(PODS, pod)
            if action[0] == "fail":
                now = now_rfc3339()
                terminated = {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}
                status = {
                    "phase": "Failed",
                    "containerStatuses": [
                        {
                            "name": "worker",
                            "image": created["spec"]["containers"][0]["image"],
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }
                    ],
                }
                self._store.merge_patch(
                    PODS, namespace, created["metadata"]["name"], {"status": status}, subresource="status"
                )
        except ApiError as error:
            log.info("kmm: worker pod for %s/%s on %s not created: %s", namespace, name, node_name, error)
            if error.code == 409:  # the previous step's pod is still terminating
                self._work.add_after(pair, WORKER_RETRY_DELAY)
            return
        self._workers[pair] = action

    def _end_worker(self, pair: Pair, *, completed: bool = False) -> None:
        """Delete the worker pod of a step, reporting it Succeeded first when the step completed."""
        action = self._workers.pop(pair, None)
        if action is None:
            return
        (namespace, _), _ = pair
        name = worker_pod_name(pair)
        try:
            if completed:
                self._store.merge_patch(PODS, namespace, name, {"status": {"phase": "Succeeded"}}, subresource="status")
            self._store.delete(PODS, namespace, name)
        except ApiError as error:
            if error.code != 404:
                log.info("kmm: worker pod %s/%s not removed: %s", namespace, name, error)

    def _write_status(self, key: Key) -> None:
        module = self._modules.get(key)
        if module is None:
            return
        counts = self._counts.get(key, _ModuleCounts())
        loader = {
            "nodesMatchingSelectorNumber": counts.matching,
            "desiredNumber": counts.desired,
            "availableNumber": counts.available,
        }
        if ((module.get("status") or {}).get("moduleLoader") or {}) == loader:
            return
        namespace, name = key
        try:
            updated = self._store.merge_patch(
                MODULES, namespace, name, {"status": {"moduleLoader": loader}}, subresource="status"
            )
        except ApiError as error:
            if error.code == 404:
                return
            raise
        self._modules.observe(updated)

    def _warn_failed_load(self, pair: Pair, version: str) -> None:
        module = self._modules.get(pair[0])
        if module is None or (pair, version) in self._warned:
            return
        self._warned.add((pair, version))
        (namespace, name), node_name = pair
        now = now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "kmm.sigs.x-k8s.io/v1beta1",
                "kind": "Module",
                "name": name,
                "namespace": namespace,
                "uid": module["metadata"].get("uid", ""),
            },
            "reason": "FailedLoad",
            "message": f"Failed to load kernel module {name}{f' version {version}' if version else ''} "
            f"on node {node_name}",
            "type": "Warning",
            "source": {"component": "kmm", "host": node_name},
            "reportingComponent": "kmm",
            "reportingInstance": node_name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._store.create(EVENTS, event)
        except ApiError as error:
            log.info("kmm: could not record load failure event: %s", error)
