"""Building blocks of the simulated controllers.

``ResourceCache`` keeps a local copy of one resource current from store events (the informer of a real
controller); ``WorkQueue`` and ``DelayQueue`` run deduplicated work on the event loop in bounded batches, so a burst
of thousands of objects never stalls the API server that shares the loop.
"""

import asyncio
import heapq
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from kubesim.errors import ApiError
from kubesim.objectstore import JsonObject, ObjectStore, WatchEvent
from kubesim.resource_keys import CRDS

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name); the namespace is "" for cluster-scoped objects."""


ChangeHandler = Callable[[JsonObject | None, JsonObject | None], None]
"""Called with (old, new); old is None when added, new is None when deleted."""

K = TypeVar("K", bound=Hashable)

BATCH_SIZE = 500
"""Work items run per loop iteration before yielding to other callbacks."""


def object_key(obj: JsonObject) -> Key:
    metadata = obj["metadata"]
    return (metadata.get("namespace") or "", metadata["name"])


def _resource_version(obj: JsonObject) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def _is_older(candidate: JsonObject, cached: JsonObject) -> bool:
    candidate_rv, cached_rv = _resource_version(candidate), _resource_version(cached)
    return candidate_rv is not None and cached_rv is not None and candidate_rv <= cached_rv


class ResourceCache:
    """Objects of one resource, current as of the last event or own write observed, optionally indexed by node.

    Cached objects are shared and must never be mutated. Events that are older than the cached object (by
    resourceVersion) are ignored, so a controller may record its own writes before their events arrive.
    """

    def __init__(
        self,
        store: ObjectStore,
        resource: str,
        *,
        index_by_node: bool = False,
        crd_name: str | None = None,
    ) -> None:
        self.resource = resource
        self._store = store
        self._crd_name = crd_name
        self._objects: dict[Key, JsonObject] = {}
        self._by_node: dict[str, dict[Key, JsonObject]] | None = {} if index_by_node else None
        self._handlers: list[ChangeHandler] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._unsubscribe_crds: Callable[[], None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Subscribe and load the current objects.

        For a custom resource (``crd_name`` given) the cache also follows its CRD: it stays empty while the CRD
        does not exist and subscribes again whenever the CRD is (re)created.
        """
        if self._crd_name is not None:
            self._unsubscribe_crds = self._store.subscribe(CRDS, self._on_crd_event)
        self._resubscribe()

    def stop(self) -> None:
        self._stopped = True
        for unsubscribe in (self._unsubscribe, self._unsubscribe_crds):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe = self._unsubscribe_crds = None
        self._handlers.clear()

    def _resubscribe(self) -> None:
        if self._stopped or self._unsubscribe is not None:
            return
        try:
            self._unsubscribe = self._store.subscribe(self.resource, self._on_event)
            current = self._store.list(self.resource)
        except ApiError as error:
            if error.code != 404 or self._crd_name is None:
                raise
            current = []  # the CRD is not served (yet)
        names = {object_key(obj) for obj in current}
        for key, gone in list(self._objects.items()):
            if key not in names:
                self.observe_deleted(gone)
        for obj in current:
            self.observe(obj)

    def _on_crd_event(self, event: WatchEvent) -> None:
        if event["object"]["metadata"]["name"] != self._crd_name:
            return
        if event["type"] == "DELETED":
            self._unsubscribe = None  # the store drops the listeners of a resource with its CRD
        # The store serves a new CRD's resource once the write that announced it returns.
        asyncio.get_running_loop().call_soon(self._resubscribe)

    def add_handler(self, handler: ChangeHandler) -> None:
        self._handlers.append(handler)

    def get(self, key: Key) -> JsonObject | None:
        return self._objects.get(key)

    def values(self) -> Iterable[JsonObject]:
        return self._objects.values()

    def object_keys(self) -> Iterable[Key]:
        return self._objects.keys()

    def on_node(self, node_name: str) -> list[JsonObject]:
        """Objects whose ``spec.nodeName`` is ``node_name`` (only for caches built with ``index_by_node``)."""
        assert self._by_node is not None, "cache not indexed by node"
        return list(self._by_node.get(node_name, {}).values())

    def observe(self, obj: JsonObject) -> None:
        """Record the latest known state of an object (from an event or from a write's response)."""
        key = object_key(obj)
        old = self._objects.get(key)
        if old is not None and _is_older(obj, old):
            return
        self._objects[key] = obj
        self._reindex(key, old, obj)
        self._notify(old, obj)

    def observe_deleted(self, obj: JsonObject) -> None:
        """Record that an object is gone; ignored when the cache holds a newer incarnation."""
        key = object_key(obj)
        old = self._objects.get(key)
        if old is None:
            return
        if old["metadata"].get("uid") != obj["metadata"].get("uid") and _is_older(obj, old):
            return
        del self._objects[key]
        self._reindex(key, old, None)
        self._notify(old, None)

    def refresh(self, key: Key) -> None:
        """Re-read one object from the store after a write whose result is not returned (delete)."""
        namespace, name = key
        current = self._store.get(self.resource, namespace or None, name)
        if current is not None:
            self.observe(current)
            return
        old = self._objects.get(key)
        if old is not None:
            del self._objects[key]
            self._reindex(key, old, None)
            self._notify(old, None)

    def _on_event(self, event: WatchEvent) -> None:
        if event["type"] == "DELETED":
            self.observe_deleted(event["object"])
        else:
            self.observe(event["object"])

    def _reindex(self, key: Key, old: JsonObject | None, new: JsonObject | None) -> None:
        if self._by_node is None:
            return
        old_node = (old.get("spec") or {}).get("nodeName") if old is not None else None
        new_node = (new.get("spec") or {}).get("nodeName") if new is not None else None
        if old_node and old_node != new_node:
            on_old = self._by_node.get(old_node)
            if on_old is not None:
                on_old.pop(key, None)
                if not on_old:
                    del self._by_node[old_node]
        if new_node and new is not None:
            self._by_node.setdefault(new_node, {})[key] = new

    def _notify(self, old: JsonObject | None, new: JsonObject | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:
                log.exception("%s handler failed", self.resource)


class WorkQueue(Generic[K]):
    """Deduplicated keys processed soon on the loop, at most ``BATCH_SIZE`` per loop iteration.

    A key whose processing raises ``ApiError`` is retried with exponential back-off (50 ms doubling to 5 s).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, process: Callable[[K], None], name: str) -> None:
        self._loop = loop
        self._process = process
        self._name = name
        self._pending: dict[K, None] = {}
        self._handle: asyncio.Handle | None = None
        self._failures: dict[K, int] = {}
        self._retries = DelayQueue[K](loop, self.add)

    def add(self, key: K) -> None:
        self._pending[key] = None
        if self._handle is None:
            self._handle = self._loop.call_soon(self._run)

    def add_after(self, key: K, delay: float) -> None:
        self._retries.add(key, delay)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pending.clear()
        self._retries.close()

    def _run(self) -> None:
        self._handle = None
        for _ in range(min(BATCH_SIZE, len(self._pending))):
            key = next(iter(self._pending))
            del self._pending[key]
            try:
                self._process(key)
            except ApiError as error:
                failures = self._failures.get(key, 0)
                self._failures[key] = failures + 1
                delay = min(0.05 * 2**failures, 5.0)
                log.info(
                    "%s: %r failed (%s %s: %s), retrying in %.2fs",
                    self._name,
                    key,
                    error.code,
                    error.reason,
                    error.message,
                    delay,
                )
                self.add_after(key, delay)
            except Exception:
                log.exception("%s: %r failed", self._name, key)
            else:
                self._failures.pop(key, None)
        if self._pending and self._handle is None:
            self._handle = self._loop.call_soon(self._run)


class DelayQueue(Generic[K]):
    """Calls ``callback(key)`` once each key is due, with a single timer and at most ``BATCH_SIZE`` per iteration.

    Adding a key that is already waiting moves its due time; ``discard`` forgets it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[K], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._sequence = 0
        self._timer: asyncio.TimerHandle | None = None

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: K, delay: float) -> None:
        due = self._loop.time() + max(delay, 0.0)
        self._due[key] = due
        self._sequence += 1
        heapq.heappush(self._heap, (due, self._sequence, key))
        self._arm()

    def discard(self, key: K) -> None:
        self._due.pop(key, None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        self._heap.clear()

    def _arm(self) -> None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        if not self._heap:
            return
        earliest = self._heap[0][0]
        if self._timer is not None:
            if self._timer.when() <= earliest:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(earliest, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        fired = 0
        while self._heap and self._heap[0][0] <= now and fired < BATCH_SIZE:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) != due:
                continue
            del self._due[key]
            fired += 1
            try:
                self._callback(key)
            except Exception:
                log.exception("delayed work for %r failed", key)
        if self._heap and self._heap[0][0] <= now:
            self._timer = self._loop.call_at(now, self._fire)
        else:
            self._arm()
