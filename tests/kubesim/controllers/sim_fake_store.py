"""A minimal in-memory ObjectStore for controller unit tests.

It keeps the semantics the controllers rely on: resourceVersion, uid, generation, the status subresource, JSON
merge patch, finalizers, graceful deletion of bound pods (a second delete finishes it), label selectors with
equality and existence, and change notifications, delivered either synchronously inside the write or on the next
loop iteration.
"""

import asyncio
import copy
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from kubesim.errors import already_exists, conflict, not_found
from kubesim.objectstore import JsonObject, WatchEvent
from kubesim.patch import merge_patch
from kubesim.selectors import object_matcher

Key = tuple[str, str]


class FakeStore:
    def __init__(self, *, synchronous_events: bool = True) -> None:
        self.synchronous_events = synchronous_events
        self.objects: dict[str, dict[Key, JsonObject]] = {}
        self.subscribers: dict[str, list[Callable[[WatchEvent], None]]] = {}
        self.writes: list[tuple[str, str, Key]] = []
        self._versions = itertools.count(1)

    # ObjectStore

    def get(self, resource: str, namespace: str | None, name: str) -> JsonObject | None:
        obj = self.objects.get(resource, {}).get((namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JsonObject]:
        matches = object_matcher(label_selector, field_selector)
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in self.objects.get(resource, {}).items()
            if (namespace is None or ns == namespace) and (matches is None or matches(obj))
        ]

    def create(self, resource: str, obj: JsonObject) -> JsonObject:
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        key = (metadata.get("namespace") or "", metadata["name"])
        objects = self.objects.setdefault(resource, {})
        if key in objects:
            raise already_exists(resource.rsplit("/", 1)[-1], key[1])
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        metadata["generation"] = 1
        if resource == "v1/pods":
            obj["status"] = {"phase": "Pending"}
        return self._commit(resource, key, obj, "ADDED")

    def update(self, resource: str, obj: JsonObject, *, subresource: str | None = None) -> JsonObject:
        metadata = obj["metadata"]
        key = (metadata.get("namespace") or "", metadata["name"])
        current = self._current(resource, key)
        wanted_rv = metadata.get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise conflict(resource, key[1], "the object has been modified")
        return self._replace(resource, key, current, copy.deepcopy(obj), subresource)

    def merge_patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: JsonObject,
        *,
        subresource: str | None = None,
    ) -> JsonObject:
        key = (namespace or "", name)
        current = self._current(resource, key)
        return self._replace(resource, key, current, merge_patch(current, patch), subresource)

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        key = (namespace or "", name)
        current = self._current(resource, key)
        metadata = current["metadata"]
        if metadata.get("finalizers") or (
            resource == "v1/pods" and current["spec"].get("nodeName") and not metadata.get("deletionTimestamp")
        ):
            if not metadata.get("deletionTimestamp"):
                updated = copy.deepcopy(current)
                updated["metadata"]["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                updated["metadata"]["deletionGracePeriodSeconds"] = 30
                self._commit(resource, key, updated, "MODIFIED")
            return
        self._remove(resource, key)

    def subscribe(self, resource: str, callback: Callable[[WatchEvent], None]) -> Callable[[], None]:
        self.subscribers.setdefault(resource, []).append(callback)
        return lambda: self.subscribers[resource].remove(callback)

    # Internals

    def _current(self, resource: str, key: Key) -> JsonObject:
        current = self.objects.get(resource, {}).get(key)
        if current is None:
            raise not_found(resource.rsplit("/", 1)[-1], key[1])
        return current

    def _replace(
        self, resource: str, key: Key, current: JsonObject, new: JsonObject, subresource: str | None
    ) -> JsonObject:
        if subresource == "status":
            merged = copy.deepcopy(current)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        else:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
                if field in current["metadata"]:
                    new["metadata"][field] = current["metadata"][field]
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = current["metadata"]["generation"] + 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            grace = new["metadata"].get("deletionGracePeriodSeconds")
            if resource != "v1/pods" or not grace:
                self._remove(resource, key)
                return new
        return self._commit(resource, key, new, "MODIFIED")

    def _commit(self, resource: str, key: Key, obj: JsonObject, kind: str) -> JsonObject:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects.setdefault(resource, {})[key] = obj
        self.writes.append((kind, resource, key))
        self._notify(resource, kind, obj)
        return copy.deepcopy(obj)

    def _remove(self, resource: str, key: Key) -> None:
        obj = self.objects[resource].pop(key)
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes.append(("DELETED", resource, key))
        self._notify(resource, "DELETED", obj)

    def _notify(self, resource: str, kind: str, obj: JsonObject) -> None:
        event: WatchEvent = {"type": kind, "resource": resource, "object": copy.deepcopy(obj)}  # type: ignore[typeddict-item]
        for callback in list(self.subscribers.get(resource, [])):
            if self.synchronous_events:
                callback(event)
            else:
                asyncio.get_running_loop().call_soon(callback, event)
