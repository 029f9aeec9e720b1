"""Storage and resourceVersions: the objects of every resource in memory, one cluster-wide resourceVersion, the
change history that watches replay, the listeners that watches and controllers follow, and the resource types
(built-in ones and those CRDs define).

Stored objects are plain dicts that are never mutated after they are stored: every write builds a new dict, so
the HTTP layer can serialise stored objects directly and watch histories can keep references to old versions.
The ``*_raw`` methods return the stored dicts themselves, which must not be mutated.
"""

from __future__ import annotations

import bisect
import builtins
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from kubesim.errors import ApiError, gone, not_found
from kubesim.resources import BUILTIN_RESOURCES, ResourceType, resource_types_from_crd
from kubesim.selectors import ObjectPredicate

JsonObject = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
RawListener = Callable[[str, JsonObject], None]

FIRST_RESOURCE_VERSION = 1000


def owner_uids(obj: JsonObject) -> set[str]:
    return {ref["uid"] for ref in obj.get("metadata", {}).get("ownerReferences") or [] if "uid" in ref}


@dataclass
class _Bucket:
    """All objects of one resource (every served version shares it) and its recent change history."""

    objects: dict[str, dict[str, JsonObject]]
    history: deque[tuple[int, str, JsonObject]]
    compacted_below: int
    listeners: list[RawListener]
    # Sorted names per namespace, rebuilt lazily after an object is added or removed there.
    sorted_names: dict[str, list[str]] = field(default_factory=dict)

    def names_in_order(self, namespace: str) -> list[str]:
        names = self.sorted_names.get(namespace)
        if names is None:
            names = self.sorted_names[namespace] = sorted(self.objects.get(namespace, ()))
        return names


class Storage:
    """Objects by resource, namespace and name, with the resourceVersion, history and listener machinery."""

    def __init__(self, *, history_limit: int) -> None:
        self.history_limit = history_limit
        self._types: dict[str, ResourceType] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._rv = FIRST_RESOURCE_VERSION
        self._uids: dict[str, tuple[str, str, str]] = {}
        self._dependents: dict[str, set[tuple[str, str, str]]] = {}
        self._pending: deque[tuple[str, str, JsonObject]] = deque()
        self._delivering = False
        self._terminating_namespaces: set[str] = set()
        for resource_type in BUILTIN_RESOURCES:
            self._register(resource_type)

    # --- resource types ------------------------------------------------------------------------------

    def _register(self, resource_type: ResourceType) -> None:
        self._types[resource_type.key] = resource_type
        if resource_type.storage not in self._buckets:
            self._buckets[resource_type.storage] = _Bucket({}, deque(), self._rv, [])

    def types(self) -> builtins.list[ResourceType]:
        return list(self._types.values())

    def resolve(self, resource: str) -> ResourceType:
        resource_type = self._types.get(resource)
        if resource_type is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({resource})")
        return resource_type

    def resolve_optional(self, resource: str) -> ResourceType | None:
        return self._types.get(resource)

    def find_type(self, api_version: str, kind: str) -> ResourceType | None:
        return next(
            (t for t in self._types.values() if t.api_version == api_version and t.kind == kind),
            None,
        )

    def _sync_crd_types(self, crd: JsonObject | None, old: JsonObject | None) -> None:
        if old is not None:
            group = old["spec"]["group"]
            plural = old["spec"]["names"]["plural"]
            for key in [k for k, t in self._types.items() if t.group == group and t.plural == plural]:
                del self._types[key]
        if crd is not None:
            for resource_type in resource_types_from_crd(crd):
                self._register(resource_type)
        elif old is not None:
            self._buckets.pop(f"{old['spec']['group']}/{old['spec']['names']['plural']}", None)

    # --- reading -------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _bucket(self, resource_type: ResourceType) -> _Bucket:
        return self._buckets[resource_type.storage]

    def present(self, resource_type: ResourceType, obj: JsonObject) -> JsonObject:
        """The object as served at this type's version (only apiVersion differs between CRD versions)."""
        if obj.get("apiVersion") == resource_type.api_version:
            return obj
        return {**obj, "apiVersion": resource_type.api_version}

    def get_raw(self, resource_type: ResourceType, namespace: str | None, name: str) -> JsonObject | None:
        bucket = self._bucket(resource_type)
        found = bucket.objects.get((namespace or "") if resource_type.namespaced else "", {}).get(name)
        return None if found is None else self.present(resource_type, found)

    def iter_raw(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        predicate: ObjectPredicate | None = None,
        after: tuple[str, str] | None = None,
    ) -> Iterator[JsonObject]:
        """Objects sorted by namespace and name, as a real server lists them; ``after`` resumes a paged list
        after that (namespace, name)."""
        bucket = self._bucket(resource_type)
        objects = bucket.objects
        if namespace is not None and resource_type.namespaced:
            namespaces = [namespace] if namespace in objects else []
        else:
            namespaces = sorted(objects)
        for ns in namespaces:
            if after is not None and ns < after[0]:
                continue
            names = bucket.names_in_order(ns)
            start = bisect.bisect_right(names, after[1]) if after is not None and ns == after[0] else 0
            by_name = objects[ns]
            for name in names[start:]:
                obj = by_name[name]
                if predicate is None or predicate(obj):
                    yield self.present(resource_type, obj)

    def count_after(self, resource_type: ResourceType, namespace: str | None, after: tuple[str, str]) -> int:
        """How many objects a paged list without selectors has left after ``after``."""
        bucket = self._bucket(resource_type)
        if namespace is not None and resource_type.namespaced:
            namespaces = [namespace] if namespace in bucket.objects else []
        else:
            namespaces = list(bucket.objects)
        total = 0
        for ns in namespaces:
            if ns > after[0]:
                total += len(bucket.objects[ns])
            elif ns == after[0]:
                names = bucket.names_in_order(ns)
                total += len(names) - bisect.bisect_right(names, after[1])
        return total

    def _existing(self, resource_type: ResourceType, namespace: str | None, name: str) -> JsonObject:
        found = self.get_raw(resource_type, namespace, name)
        if found is None:
            raise not_found(resource_type.group_resource, name)
        return found

    # --- change notification -------------------------------------------------------------------------

    def listen(self, resource_type: ResourceType, listener: RawListener) -> Callable[[], None]:
        """Call ``listener(type, stored_object)`` after every committed change; returns the unsubscribe."""
        listeners = self._bucket(resource_type).listeners
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def _notify(self, storage: str, event_type: str, obj: JsonObject) -> None:
        """Deliver in commit order even when a listener writes from inside its callback."""
        self._pending.append((storage, event_type, obj))
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                target, kind, changed = self._pending.popleft()
                bucket = self._buckets.get(target)
                for listener in list(bucket.listeners) if bucket else []:
                    listener(kind, changed)
        finally:
            self._delivering = False

    def history_since(
        self, resource_type: ResourceType, resource_version: int
    ) -> builtins.list[tuple[str, JsonObject]]:
        """Changes after ``resource_version``; 410 Expired when that version has been compacted away."""
        bucket = self._bucket(resource_type)
        if resource_version < bucket.compacted_below:
            raise gone(f"too old resource version: {resource_version} ({bucket.compacted_below})")
        return [(kind, obj) for rv, kind, obj in bucket.history if rv > resource_version]

    def compact(self) -> None:
        """Forget every change history, as etcd compaction does: older resourceVersions then get 410 Gone."""
        for bucket in self._buckets.values():
            bucket.history.clear()
            bucket.compacted_below = self._rv

    # --- committing ----------------------------------------------------------------------------------

    def _commit(self, resource_type: ResourceType, obj: JsonObject, event_type: EventType) -> JsonObject:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        ns = meta.get("namespace", "") if resource_type.namespaced else ""
        name = meta["name"]
        bucket = self._bucket(resource_type)
        previous = bucket.objects.get(ns, {}).get(name)
        if event_type == "DELETED":
            by_name = bucket.objects.get(ns, {})
            by_name.pop(name, None)
            if not by_name:
                bucket.objects.pop(ns, None)
            bucket.sorted_names.pop(ns, None)
            self._uids.pop(meta["uid"], None)
        else:
            if previous is None:
                bucket.sorted_names.pop(ns, None)
            bucket.objects.setdefault(ns, {})[name] = obj
            self._uids[meta["uid"]] = (resource_type.key, ns, name)
        self._index_owners(resource_type, previous, None if event_type == "DELETED" else obj)
        added_owners = event_type != "DELETED" and bool(owner_uids(obj) - (owner_uids(previous) if previous else set()))
        bucket.history.append((self._rv, event_type, obj))
        while len(bucket.history) > self.history_limit:
            bucket.compacted_below = bucket.history.popleft()[0]
        self._notify(resource_type.storage, event_type, obj)
        if added_owners:
            self._schedule_owner_check(resource_type, ns, name)
        return obj

    def _index_owners(self, resource_type: ResourceType, old: JsonObject | None, new: JsonObject | None) -> None:
        old_uids = owner_uids(old) if old else set()
        new_uids = owner_uids(new) if new else set()
        if old_uids == new_uids:
            return
        source = new if new is not None else old
        assert source is not None
        meta = source["metadata"]
        ref = (resource_type.key, meta.get("namespace", "") if resource_type.namespaced else "", meta["name"])
        for uid in old_uids - new_uids:
            dependents = self._dependents.get(uid)
            if dependents is not None:
                dependents.discard(ref)
                if not dependents:
                    del self._dependents[uid]
        for uid in new_uids - old_uids:
            self._dependents.setdefault(uid, set()).add(ref)

    def _schedule_owner_check(self, resource_type: ResourceType, namespace: str, name: str) -> None:
        """Called when an object gained owner references; the garbage collector (``Lifecycle``) looks at them."""
