"""The in-memory object store: the single source of truth behind the HTTP API and the simulated controllers.

Stored objects are plain dicts that are never mutated after they are stored: every write builds a new dict, so
the HTTP layer can serialise stored objects directly and watch histories can keep references to old versions.
The methods of the :class:`kubesim.objectstore.ObjectStore` protocol hand out copies; the ``*_raw`` methods used
by the server return the stored dicts themselves and must not be mutated.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import math
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from kubesim import apply, kinds, schema, validation
from kubesim.errors import ApiError, already_exists, bad_request, conflict, gone, invalid, not_found
from kubesim.objectstore import WatchEvent
from kubesim.patch import copy_object, json_patch, merge_patch, strategic_merge_patch
from kubesim.resources import BUILTIN_RESOURCES, ResourceType, resource_types_from_crd
from kubesim.selectors import ObjectPredicate, label_selector_matcher, object_matcher
from kubesim.validation import FieldValidation

JsonObject = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
RawListener = Callable[[str, JsonObject], None]

CRD_RESOURCE = "apiextensions.k8s.io/v1/customresourcedefinitions"
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
FOREGROUND_FINALIZER = "foregroundDeletion"
FIRST_RESOURCE_VERSION = 1000
# Kinds whose creator reports the initial status (the kubelet registers its node with one).
KEEPS_STATUS_ON_CREATE = frozenset({"v1/nodes"})
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

PATCH_MERGE = "application/merge-patch+json"
PATCH_JSON = "application/json-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (PATCH_MERGE, PATCH_JSON, PATCH_STRATEGIC, PATCH_APPLY)


class EvictedPod(NamedTuple):
    """A pod that an eviction removed (or started to remove)."""

    namespace: str
    name: str
    uid: str


def now_rfc3339(offset_seconds: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: JsonObject) -> JsonObject:
    meta: JsonObject = obj.setdefault("metadata", {})
    return meta


def _owner_uids(obj: JsonObject) -> set[str]:
    return {ref["uid"] for ref in obj.get("metadata", {}).get("ownerReferences") or [] if "uid" in ref}


def _list_types(resource_type: ResourceType) -> apply.ListTypes:
    if resource_type.builtin:
        return apply.BUILTIN_LISTS
    return apply.SchemaListTypes(resource_type.schema or {})


def is_pod_ready(pod: JsonObject) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


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


@dataclass(frozen=True)
class DeleteOptions:
    propagation: str | None = None
    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    dry_run: bool = False

    @classmethod
    def from_body(cls, body: JsonObject | None, dry_run: bool = False) -> DeleteOptions:
        body = body or {}
        preconditions = body.get("preconditions") or {}
        orphan = body.get("orphanDependents")
        propagation = body.get("propagationPolicy") or ("Orphan" if orphan else None)
        return cls(
            propagation=propagation,
            grace_period_seconds=body.get("gracePeriodSeconds"),
            precondition_uid=preconditions.get("uid"),
            precondition_resource_version=preconditions.get("resourceVersion"),
            dry_run=dry_run or "All" in (body.get("dryRun") or []),
        )


class Store:
    """In-memory API objects with Kubernetes write semantics; implements ``kubesim.objectstore.ObjectStore``."""

    def __init__(self, *, history_limit: int = 20_000, graceful_pod_deletion: bool = False) -> None:
        self.history_limit = history_limit
        # Seconds between a namespace turning Terminating and the deletion of its content.
        self.namespace_cleanup_delay = 0.2
        # When true, deleting a pod bound to a node only marks it terminating; the kubelet finishes the deletion.
        self.graceful_pod_deletion = graceful_pod_deletion
        self._types: dict[str, ResourceType] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._rv = FIRST_RESOURCE_VERSION
        self._uids: dict[str, tuple[str, str, str]] = {}
        self._dependents: dict[str, set[tuple[str, str, str]]] = {}
        self._pending: deque[tuple[str, str, JsonObject]] = deque()
        self._delivering = False
        self._terminating_namespaces: set[str] = set()
        self._cluster_ip = 0
        self.evictions: Counter[EvictedPod] = Counter()
        """Evictions that succeeded (not dry runs), per pod."""
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

    # --- ObjectStore protocol ------------------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> JsonObject | None:
        found = self.get_raw(self.resolve(resource), namespace, name)
        return None if found is None else copy_object(found)

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JsonObject]:
        resource_type = self.resolve(resource)
        predicate = object_matcher(label_selector, field_selector)
        return [copy_object(o) for o in self.iter_raw(resource_type, namespace, predicate)]

    def create(self, resource: str, obj: JsonObject) -> JsonObject:
        return copy_object(self.create_raw(self.resolve(resource), obj))

    def update(self, resource: str, obj: JsonObject, *, subresource: str | None = None) -> JsonObject:
        return copy_object(self.update_raw(self.resolve(resource), obj, subresource=subresource))

    def merge_patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: JsonObject,
        *,
        subresource: str | None = None,
    ) -> JsonObject:
        resource_type = self.resolve(resource)
        return copy_object(self.patch_raw(resource_type, namespace, name, PATCH_MERGE, patch, subresource=subresource))

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        self.delete_raw(self.resolve(resource), namespace, name, DeleteOptions())

    def subscribe(self, resource: str, callback: Callable[[WatchEvent], None]) -> Callable[[], None]:
        resource_type = self.resolve(resource)

        def deliver(event_type: str, obj: JsonObject) -> None:
            callback(
                {
                    "type": event_type,  # type: ignore[typeddict-item]
                    "resource": resource,
                    "object": copy_object(self.present(resource_type, obj)),
                }
            )

        return self.listen(resource_type, deliver)

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
        added_owners = event_type != "DELETED" and bool(
            _owner_uids(obj) - (_owner_uids(previous) if previous else set())
        )
        bucket.history.append((self._rv, event_type, obj))
        while len(bucket.history) > self.history_limit:
            bucket.compacted_below = bucket.history.popleft()[0]
        self._notify(resource_type.storage, event_type, obj)
        if added_owners:
            self._schedule_owner_check(resource_type, ns, name)
        return obj

    def _index_owners(self, resource_type: ResourceType, old: JsonObject | None, new: JsonObject | None) -> None:
        old_uids = _owner_uids(old) if old else set()
        new_uids = _owner_uids(new) if new else set()
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

    # --- create --------------------------------------------------------------------------------------

    def _check_kind(self, resource_type: ResourceType, obj: JsonObject) -> None:
        """An apiVersion other than the URL's is a decoding error (400); so is another kind of a built-in kind,
        while a custom resource of another kind fails validation (422), as in apiextensions' strategy."""
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        if api_version and api_version != resource_type.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource_type.api_version})"
            )
        if kind and kind != resource_type.kind:
            if resource_type.builtin:
                raise bad_request(
                    f"the kind in the data ({kind}) does not match the expected kind ({resource_type.kind})"
                )
            name = (obj.get("metadata") or {}).get("name", "")
            cause = {"reason": "FieldValueInvalid", "message": f'Invalid value: "{kind}": must be {resource_type.kind}'}
            raise invalid(str(kind), name, resource_type.group, [{**cause, "field": "kind"}])
        obj["kind"] = resource_type.kind
        obj["apiVersion"] = resource_type.api_version

    def _check_crd_not_terminating(self, resource_type: ResourceType, meta: JsonObject) -> None:
        """No new custom resources while their CRD is being deleted (apiextensions' create strategy)."""
        if resource_type.builtin:
            return
        crd = self.get_raw(self._types[CRD_RESOURCE], None, f"{resource_type.plural}.{resource_type.group}")
        if crd is not None and "deletionTimestamp" in crd["metadata"]:
            raise kinds.forbid(
                f'{resource_type.group_resource} "{meta.get("name", "")}" is forbidden: '
                "create not allowed while custom resource definition is terminating",
                {"name": meta.get("name", ""), "group": resource_type.group, "kind": resource_type.plural},
            )

    def _check_namespace(self, resource_type: ResourceType, meta: JsonObject) -> None:
        if not resource_type.namespaced:
            meta.pop("namespace", None)
            return
        namespace = meta.get("namespace")
        if not namespace:
            raise bad_request("the namespace of the object is required for a namespaced resource")
        if self._buckets["/namespaces"].objects.get("", {}).get(namespace) is None:
            raise not_found("namespaces", namespace)
        if namespace in self._terminating_namespaces:
            raise kinds.forbid(
                f'{resource_type.plural} "{meta.get("name", "")}" is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated",
                {"name": meta.get("name", ""), "group": resource_type.group, "kind": resource_type.plural},
            )

    def _generate_name(self, meta: JsonObject, resource_type: ResourceType) -> None:
        if meta.get("name"):
            return
        prefix = meta.get("generateName")
        if not prefix:
            raise invalid(
                resource_type.kind,
                "",
                resource_type.group,
                [
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value: name or generateName is required",
                        "field": "metadata.name",
                    }
                ],
            )
        meta["name"] = prefix + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))

    def _decode(self, resource_type: ResourceType, obj: JsonObject, field_validation: FieldValidation | None) -> None:
        """Drop the fields the kind does not have, as decoding a request body does, and report them to
        ``field_validation`` (writes that come over HTTP)."""
        if resource_type.schema is not None:
            unknown = validation.prune_custom_resource(resource_type.schema, obj)
        else:
            unknown = validation.prune_metadata(obj)
        if field_validation is not None:
            field_validation.report(resource_type.kind, resource_type.version, unknown)

    def _apply_schema(self, resource_type: ResourceType, obj: JsonObject, old: JsonObject | None = None) -> None:
        """Prune, default and validate (OpenAPI and CEL rules) a custom resource, or check a built-in kind."""
        kinds.validate_metadata(resource_type.kind, resource_type.group, obj)
        if resource_type.schema is not None:
            schema.prune(resource_type.schema, obj, root=True)
            schema.apply_defaults(resource_type.schema, obj)
            causes = validation.custom_resource_causes(resource_type.schema, obj, old)
            if causes:
                raise invalid(resource_type.kind, obj["metadata"]["name"], resource_type.group, causes)
        elif resource_type.builtin:
            kinds.validate_builtin(resource_type.key, resource_type.kind, resource_type.group, obj)

    def prepare_create(
        self, resource_type: ResourceType, obj: JsonObject, field_validation: FieldValidation | None = None
    ) -> JsonObject:
        """The object a create would store, without storing it (used by create and dry runs)."""
        obj = copy_object(obj)
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be an object")
        self._check_kind(resource_type, obj)
        self._decode(resource_type, obj, field_validation)
        meta = _meta(obj)
        self._generate_name(meta, resource_type)
        kinds.validate_name(resource_type.kind, resource_type.group, meta["name"])
        self._check_crd_not_terminating(resource_type, meta)
        self._check_namespace(resource_type, meta)
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if resource_type.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if resource_type.has_status and resource_type.key not in KEEPS_STATUS_ON_CREATE:
            obj.pop("status", None)
        default = kinds.DEFAULTS.get(resource_type.key)
        if default is not None:
            default(obj)
        if resource_type.key in kinds.INITIAL_STATUS:
            obj["status"] = {**kinds.INITIAL_STATUS[resource_type.key], **(obj.get("status") or {})}
        if resource_type.key == "v1/services":
            self._allocate_cluster_ip(obj)
        if resource_type.key == CRD_RESOURCE:
            self._prepare_crd(obj)
        self._apply_schema(resource_type, obj)
        return obj

    def _allocate_cluster_ip(self, obj: JsonObject) -> None:
        spec = obj["spec"]
        if spec.get("clusterIP") in (None, ""):
            self._cluster_ip += 1
            spec["clusterIP"] = f"10.96.{self._cluster_ip // 250}.{self._cluster_ip % 250 + 2}"
            spec["clusterIPs"] = [spec["clusterIP"]]

    def _prepare_crd(self, crd: JsonObject) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if crd["metadata"]["name"] != expected:
            raise invalid(
                "CustomResourceDefinition",
                crd["metadata"]["name"],
                "apiextensions.k8s.io",
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f'Invalid value: "{crd["metadata"]["name"]}": must be spec.names.plural+"."+'
                        "spec.group",
                        "field": "metadata.name",
                    }
                ],
            )
        finalizers = crd["metadata"].setdefault("finalizers", [])
        if CRD_CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CRD_CLEANUP_FINALIZER)
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", f"{names.get('kind')}List")
        conditions = [
            {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now_rfc3339()}
            for kind, reason, message in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ]
        crd["status"] = {
            "acceptedNames": names,
            "conditions": conditions,
            "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
        }

    def _record_manager(
        self,
        resource_type: ResourceType,
        old: JsonObject | None,
        new: JsonObject,
        field_manager: str | None,
        subresource: str | None,
    ) -> None:
        if field_manager:
            new["metadata"]["managedFields"] = apply.record_update(
                old, new, field_manager, time=now_rfc3339(), subresource=subresource, lists=_list_types(resource_type)
            )

    def create_raw(
        self,
        resource_type: ResourceType,
        obj: JsonObject,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
        field_validation: FieldValidation | None = None,
    ) -> JsonObject:
        prepared = self.prepare_create(resource_type, obj, field_validation)
        self._record_manager(resource_type, None, prepared, field_manager, None)
        meta = prepared["metadata"]
        if self.get_raw(resource_type, meta.get("namespace"), meta["name"]) is not None:
            raise already_exists(resource_type.group_resource, meta["name"])
        if dry_run:
            return prepared
        committed = self._commit(resource_type, prepared, "ADDED")
        if resource_type.key == CRD_RESOURCE:
            self._sync_crd_types(committed, None)
        return committed

    # --- update --------------------------------------------------------------------------------------

    def _body_without(self, obj: JsonObject, with_status: bool) -> JsonObject:
        skip = {"metadata", "status"} if with_status else {"metadata"}
        return {k: v for k, v in obj.items() if k not in skip}

    def _existing(self, resource_type: ResourceType, namespace: str | None, name: str) -> JsonObject:
        found = self.get_raw(resource_type, namespace, name)
        if found is None:
            raise not_found(resource_type.group_resource, name)
        return found

    def prepare_update(
        self,
        resource_type: ResourceType,
        old: JsonObject,
        obj: JsonObject,
        *,
        subresource: str | None = None,
        field_validation: FieldValidation | None = None,
    ) -> JsonObject:
        new = copy_object(obj)
        self._check_kind(resource_type, new)
        self._decode(resource_type, new, field_validation)
        meta = _meta(new)
        old_meta = old["metadata"]
        given_uid = meta.get("uid")
        if given_uid and given_uid != old_meta["uid"]:
            raise conflict(
                resource_type.group_resource,
                old_meta["name"],
                f"Precondition failed: UID in precondition: {given_uid}, UID in object meta: {old_meta['uid']}",
            )
        given_rv = meta.get("resourceVersion")
        if given_rv and given_rv != old_meta["resourceVersion"]:
            raise conflict(
                resource_type.group_resource,
                old_meta["name"],
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if subresource == "status":
            new = {**copy_object(old), "status": new.get("status")} if "status" in new else copy_object(old)
            if new.get("status") is None:
                new.pop("status", None)
            meta = new["metadata"]
        elif resource_type.has_status:
            if "status" in old:
                new["status"] = copy_object(old["status"])
            else:
                new.pop("status", None)
        for kept in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "generation"):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
            else:
                meta.pop(kept, None)
        if "deletionGracePeriodSeconds" in old_meta:
            meta["deletionGracePeriodSeconds"] = old_meta["deletionGracePeriodSeconds"]
        if "managedFields" in old_meta and "managedFields" not in meta:
            meta["managedFields"] = old_meta["managedFields"]
        self._check_finalizers(resource_type, old, new)
        default = kinds.DEFAULTS.get(resource_type.key)
        rule = kinds.UPDATE_RULES.get(resource_type.key)
        if subresource is None:
            if default is not None:
                default(new)
            if rule is not None:
                rule(old, new)
        self._apply_schema(resource_type, new, old)
        if resource_type.has_generation and self._body_without(new, resource_type.has_status) != self._body_without(
            old, resource_type.has_status
        ):
            meta["generation"] = old_meta.get("generation", 1) + 1
        return new

    def _check_finalizers(self, resource_type: ResourceType, old: JsonObject, new: JsonObject) -> None:
        if "deletionTimestamp" not in old["metadata"]:
            return
        before = set(old["metadata"].get("finalizers") or [])
        added = [f for f in new["metadata"].get("finalizers") or [] if f not in before]
        if added:
            raise invalid(
                resource_type.kind,
                old["metadata"]["name"],
                resource_type.group,
                [
                    {
                        "reason": "FieldValueForbidden",
                        "message": f"Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {added}",
                        "field": "metadata.finalizers",
                    }
                ],
            )

    def _store_update(self, resource_type: ResourceType, old: JsonObject, new: JsonObject) -> JsonObject:
        """Commit an update unless it changes nothing; remove the object once its last finalizer is gone."""
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return old
        if "deletionTimestamp" in new["metadata"] and not new["metadata"].get("finalizers"):
            return self._remove(resource_type, new)
        committed = self._commit(resource_type, new, "MODIFIED")
        if resource_type.key == CRD_RESOURCE and "deletionTimestamp" not in new["metadata"]:
            self._sync_crd_types(committed, old)
        return committed

    def update_raw(
        self,
        resource_type: ResourceType,
        obj: JsonObject,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        require_resource_version: bool = False,
        field_manager: str | None = None,
        field_validation: FieldValidation | None = None,
    ) -> JsonObject:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise bad_request("metadata.name is required for an update")
        old = self._existing(resource_type, meta.get("namespace"), name)
        if require_resource_version and not meta.get("resourceVersion"):
            raise invalid(
                resource_type.kind,
                name,
                resource_type.group,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": "Invalid value: 0: must be specified for an update",
                        "field": "metadata.resourceVersion",
                    }
                ],
            )
        new = self.prepare_update(resource_type, old, obj, subresource=subresource, field_validation=field_validation)
        self._record_manager(resource_type, old, new, field_manager, subresource)
        if dry_run:
            return new
        return self._store_update(resource_type, old, new)

    # --- patch ---------------------------------------------------------------------------------------

    def patch_raw(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        field_validation: FieldValidation | None = None,
    ) -> JsonObject:
        old = self.get_raw(resource_type, namespace, name)
        if patch_type == PATCH_APPLY:
            return self._apply(resource_type, namespace, name, old, patch, subresource, field_manager, force, dry_run)
        if old is None:
            raise not_found(resource_type.group_resource, name)
        if patch_type == PATCH_MERGE:
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            patched = merge_patch(old, patch)
        elif patch_type == PATCH_JSON:
            patched = json_patch(old, patch)
        elif patch_type == PATCH_STRATEGIC:
            if not resource_type.builtin:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{PATCH_JSON}, {PATCH_MERGE}, {PATCH_APPLY}",
                )
            patched = strategic_merge_patch(old, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")
        if not isinstance(patched, dict):
            raise bad_request("the patched object must be a JSON object")
        patched_meta = patched.setdefault("metadata", {})
        uid = patched_meta.get("uid")
        if uid and uid != old["metadata"]["uid"]:
            raise invalid(
                resource_type.kind,
                name,
                resource_type.group,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f'Invalid value: "{uid}": field is immutable',
                        "field": "metadata.uid",
                    }
                ],
            )
        if patch_type != PATCH_JSON or patched_meta.get("resourceVersion") == old["metadata"]["resourceVersion"]:
            # A patch without a resourceVersion applies to the latest version; one with it is a precondition.
            given = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
            patched_meta["resourceVersion"] = given or old["metadata"]["resourceVersion"]
        new = self.prepare_update(
            resource_type, old, patched, subresource=subresource, field_validation=field_validation
        )
        self._record_manager(resource_type, old, new, field_manager, subresource)
        if dry_run:
            return new
        return self._store_update(resource_type, old, new)

    def _apply(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        name: str,
        old: JsonObject | None,
        applied: Any,
        subresource: str | None,
        field_manager: str | None,
        force: bool,
        dry_run: bool,
    ) -> JsonObject:
        if not field_manager:
            raise invalid(
                "PatchOptions",
                "",
                "meta.k8s.io",
                [
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value: is required for apply patch",
                        "field": "fieldManager",
                    }
                ],
            )
        if not isinstance(applied, dict):
            raise bad_request("an apply patch must be an object")
        applied_meta = applied.setdefault("metadata", {})
        if applied_meta.get("name") not in (None, name):
            raise bad_request("the name of the object does not match the name in the URL")
        applied_meta["name"] = name
        if resource_type.namespaced:
            applied_meta["namespace"] = namespace
        if old is None:
            if subresource:
                raise not_found(resource_type.group_resource, name)
            created = apply.apply_to_new(applied, field_manager, now_rfc3339(), _list_types(resource_type))
            return self.create_raw(resource_type, created, dry_run=dry_run)
        merged = apply.server_side_apply(
            old,
            applied,
            field_manager,
            force=force,
            time=now_rfc3339(),
            subresource=subresource,
            lists=_list_types(resource_type),
        )
        new = self.prepare_update(resource_type, old, merged, subresource=subresource)
        new["metadata"]["managedFields"] = merged["metadata"].get("managedFields", [])
        if dry_run:
            return new
        return self._store_update(resource_type, old, new)

    # --- delete --------------------------------------------------------------------------------------

    def _check_preconditions(self, resource_type: ResourceType, obj: JsonObject, options: DeleteOptions) -> None:
        meta = obj["metadata"]
        if options.precondition_uid and options.precondition_uid != meta["uid"]:
            raise conflict(
                resource_type.group_resource,
                meta["name"],
                f"Precondition failed: UID in precondition: {options.precondition_uid}, UID in object meta: "
                f"{meta['uid']}",
            )
        if options.precondition_resource_version and options.precondition_resource_version != meta["resourceVersion"]:
            raise conflict(
                resource_type.group_resource,
                meta["name"],
                f"Precondition failed: ResourceVersion in precondition: {options.precondition_resource_version}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )

    def delete_raw(
        self, resource_type: ResourceType, namespace: str | None, name: str, options: DeleteOptions
    ) -> JsonObject:
        """Delete or start deleting; returns the removed object or its terminating state."""
        obj = self._existing(resource_type, namespace, name)
        self._check_preconditions(resource_type, obj, options)
        if options.dry_run:
            return obj
        meta = obj["metadata"]
        if options.propagation == "Orphan":
            self._orphan_dependents(meta["uid"])
        if resource_type.key == "v1/namespaces":
            return self._delete_namespace(obj)
        if resource_type.key == "v1/pods" and self._pod_needs_graceful_termination(obj, options):
            return obj if "deletionTimestamp" in meta else self._mark_pod_terminating(resource_type, obj, options)
        finalizers = list(meta.get("finalizers") or [])
        if options.propagation == "Foreground" and "deletionTimestamp" not in meta:
            # The API server adds the finalizer; the garbage collector removes it once no dependent is left.
            finalizers.append(FOREGROUND_FINALIZER)
        if not finalizers:
            return self._remove(resource_type, obj)
        if "deletionTimestamp" in meta:
            return obj
        new = copy_object(obj)
        new_meta = new["metadata"]
        new_meta["finalizers"] = finalizers
        new_meta["deletionTimestamp"] = now_rfc3339()
        new_meta["deletionGracePeriodSeconds"] = 0
        if resource_type.has_generation:
            new_meta["generation"] = new_meta.get("generation", 1) + 1
        committed = self._commit(resource_type, new, "MODIFIED")
        if FOREGROUND_FINALIZER in finalizers:
            self._delete_dependents(meta["uid"])
        if resource_type.key == CRD_RESOURCE:
            self._cleanup_custom_resources(committed)
        return self.get_raw(resource_type, namespace, name) or committed

    def _pod_needs_graceful_termination(self, pod: JsonObject, options: DeleteOptions) -> bool:
        if not self.graceful_pod_deletion or not (pod.get("spec") or {}).get("nodeName"):
            return False
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return False
        grace = options.grace_period_seconds
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        if "deletionTimestamp" in pod["metadata"]:
            # A second delete (the kubelet's, or a forced one) finishes the job.
            return False
        return bool(grace and grace > 0)

    def _mark_pod_terminating(self, resource_type: ResourceType, pod: JsonObject, options: DeleteOptions) -> JsonObject:
        grace = options.grace_period_seconds
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        new = copy_object(pod)
        new["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        new["metadata"]["generation"] = new["metadata"].get("generation", 1) + 1
        return self._commit(resource_type, new, "MODIFIED")

    def _remove(self, resource_type: ResourceType, obj: JsonObject) -> JsonObject:
        removed = self._commit(resource_type, copy_object(obj), "DELETED")
        meta = removed["metadata"]
        self._collect_garbage(meta["uid"])
        for owner_uid in _owner_uids(removed):
            self._finish_foreground(owner_uid)
        namespace = meta.get("namespace")
        if namespace in self._terminating_namespaces:
            self._finish_namespace(namespace)
        if resource_type.key == CRD_RESOURCE:
            self._sync_crd_types(None, removed)
        elif not resource_type.builtin:
            self._finish_crd_cleanup(resource_type)
        return removed

    def delete_collection_raw(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        predicate: ObjectPredicate | None,
        options: DeleteOptions,
    ) -> builtins.list[JsonObject]:
        targets = list(self.iter_raw(resource_type, namespace, predicate))
        deleted = []
        for obj in targets:
            meta = obj["metadata"]
            if self.get_raw(resource_type, meta.get("namespace"), meta["name"]) is not None:
                deleted.append(self.delete_raw(resource_type, meta.get("namespace"), meta["name"], options))
        return deleted

    # --- garbage collection --------------------------------------------------------------------------

    def _lookup_uid(self, uid: str) -> tuple[ResourceType, JsonObject] | None:
        location = self._uids.get(uid)
        if location is None:
            return None
        key, ns, name = location
        resource_type = self._types.get(key)
        if resource_type is None:
            return None
        found = self.get_raw(resource_type, ns or None, name)
        return None if found is None else (resource_type, found)

    def _owner_alive(self, reference: JsonObject, namespace: str) -> bool:
        """Whether a reference resolves to an existing owner the dependent may have: a cluster-scoped one, or one
        in the dependent's own namespace (cross-namespace references never resolve)."""
        location = self._uids.get(reference.get("uid", ""))
        return location is not None and location[1] in ("", namespace)

    def _collect_garbage(self, owner_uid: str) -> None:
        """Check the dependents of a removed owner."""
        for key, ns, name in sorted(self._dependents.pop(owner_uid, set())):
            self._check_owners(key, ns, name)

    def _check_owners(self, key: str, namespace: str, name: str) -> None:
        """Delete a dependent left without any existing owner; drop its dangling references otherwise."""
        resource_type = self._types.get(key)
        dependent = self.get_raw(resource_type, namespace or None, name) if resource_type else None
        if resource_type is None or dependent is None or "deletionTimestamp" in dependent["metadata"]:
            return
        references = dependent["metadata"].get("ownerReferences") or []
        alive = [ref for ref in references if self._owner_alive(ref, namespace)]
        if not alive:
            self.delete_raw(resource_type, namespace or None, name, DeleteOptions(propagation="Background"))
        elif len(alive) != len(references):
            new = copy_object(dependent)
            new["metadata"]["ownerReferences"] = alive
            self._commit(resource_type, new, "MODIFIED")

    def _schedule_owner_check(self, resource_type: ResourceType, namespace: str, name: str) -> None:
        """The garbage collector looks at new owner references shortly after they are written."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._check_owners(resource_type.key, namespace, name)
        else:
            loop.call_soon(self._check_owners, resource_type.key, namespace, name)

    def _delete_dependents(self, owner_uid: str) -> None:
        for key, ns, name in sorted(self._dependents.get(owner_uid, set())):
            resource_type = self._types.get(key)
            if resource_type and self.get_raw(resource_type, ns or None, name) is not None:
                self.delete_raw(resource_type, ns or None, name, DeleteOptions(propagation="Background"))
        self._finish_foreground(owner_uid)

    def _finish_foreground(self, owner_uid: str) -> None:
        """Drop the foregroundDeletion finalizer of an owner whose dependents are all gone."""
        found = self._lookup_uid(owner_uid)
        if found is None or self._dependents.get(owner_uid):
            return
        resource_type, owner = found
        finalizers = owner["metadata"].get("finalizers") or []
        if FOREGROUND_FINALIZER not in finalizers or "deletionTimestamp" not in owner["metadata"]:
            return
        new = copy_object(owner)
        new["metadata"]["finalizers"] = [f for f in finalizers if f != FOREGROUND_FINALIZER]
        self._store_update(resource_type, owner, new)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for key, ns, name in sorted(self._dependents.get(owner_uid, set())):
            resource_type = self._types[key]
            dependent = self.get_raw(resource_type, ns or None, name)
            if dependent is None:
                continue
            new = copy_object(dependent)
            references = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
            if references:
                new["metadata"]["ownerReferences"] = references
            else:
                new["metadata"].pop("ownerReferences", None)
            self._commit(resource_type, new, "MODIFIED")

    # --- namespaces and CRDs -------------------------------------------------------------------------

    def _delete_namespace(self, namespace: JsonObject) -> JsonObject:
        """Mark the namespace Terminating; its content is deleted a moment later, as the namespace controller
        does (immediately when no event loop runs)."""
        name = namespace["metadata"]["name"]
        if "deletionTimestamp" in namespace["metadata"]:
            return namespace
        new = copy_object(namespace)
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["status"] = {"phase": "Terminating"}
        terminating = self._commit(self._types["v1/namespaces"], new, "MODIFIED")
        self._terminating_namespaces.add(name)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._empty_namespace(name)
        else:
            loop.call_later(self.namespace_cleanup_delay, self._empty_namespace, name)
        return terminating

    def _empty_namespace(self, name: str) -> None:
        for resource_type in self._one_type_per_storage():
            if not resource_type.namespaced:
                continue
            for obj in list(self.iter_raw(resource_type, name)):
                if "deletionTimestamp" not in obj["metadata"] and self.get_raw(
                    resource_type, name, obj["metadata"]["name"]
                ):
                    self.delete_raw(
                        resource_type, name, obj["metadata"]["name"], DeleteOptions(propagation="Background")
                    )
        self._finish_namespace(name)

    def _one_type_per_storage(self) -> builtins.list[ResourceType]:
        seen: dict[str, ResourceType] = {}
        for resource_type in self._types.values():
            seen.setdefault(resource_type.storage, resource_type)
        return list(seen.values())

    def _finish_namespace(self, name: str) -> None:
        if any(name in bucket.objects for storage, bucket in self._buckets.items() if storage != "/namespaces"):
            return
        self._terminating_namespaces.discard(name)
        namespaces = self._types["v1/namespaces"]
        namespace = self.get_raw(namespaces, None, name)
        if namespace is not None and not namespace["metadata"].get("finalizers"):
            self._remove(namespaces, namespace)

    def _cleanup_custom_resources(self, crd: JsonObject) -> None:
        group = crd["spec"]["group"]
        plural = crd["spec"]["names"]["plural"]
        resource_type = next((t for t in self._types.values() if t.group == group and t.plural == plural), None)
        if resource_type is None:
            return
        for obj in list(self.iter_raw(resource_type, None)):
            meta = obj["metadata"]
            if "deletionTimestamp" not in meta:
                self.delete_raw(resource_type, meta.get("namespace"), meta["name"], DeleteOptions())
        self._finish_crd_cleanup(resource_type)

    def _finish_crd_cleanup(self, resource_type: ResourceType) -> None:
        bucket = self._buckets.get(resource_type.storage)
        if bucket is not None and bucket.objects:
            return
        crds = self._types[CRD_RESOURCE]
        crd = self.get_raw(crds, None, f"{resource_type.plural}.{resource_type.group}")
        if crd is None or "deletionTimestamp" not in crd["metadata"]:
            return
        new = copy_object(crd)
        new["metadata"]["finalizers"] = [f for f in crd["metadata"].get("finalizers", []) if f != CRD_CLEANUP_FINALIZER]
        self._store_update(crds, crd, new)

    # --- pods ----------------------------------------------------------------------------------------

    def bind_pod(self, namespace: str, name: str, node: str) -> JsonObject:
        """pods/binding: assign an unscheduled pod to a node (409 when it already has one)."""
        pods = self._types["v1/pods"]
        pod = self._existing(pods, namespace, name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise ApiError(409, "Conflict", f'pod {name} is already assigned to node "{current}"')
        bound = copy_object(pod)
        bound.setdefault("spec", {})["nodeName"] = node
        return self._store_update(pods, pod, bound)

    # --- eviction ------------------------------------------------------------------------------------

    def evict(self, namespace: str, name: str, delete_options: JsonObject | None, *, dry_run: bool = False) -> None:
        """policy/v1 Eviction: delete the pod unless a PodDisruptionBudget forbids it (429)."""
        pods = self._types["v1/pods"]
        pod = self._existing(pods, namespace, name)
        options = DeleteOptions.from_body(delete_options, dry_run=dry_run)
        phase = (pod.get("status") or {}).get("phase")
        if "deletionTimestamp" not in pod["metadata"] and phase not in ("Pending", "Succeeded", "Failed"):
            self._check_budgets(pod, dry_run)
        self.delete_raw(pods, namespace, name, options)
        if not dry_run:
            self.evictions[EvictedPod(namespace, name, pod["metadata"]["uid"])] += 1

    def _check_budgets(self, pod: JsonObject, dry_run: bool) -> None:
        """429 when the PodDisruptionBudget covering the pod forbids its disruption now."""
        namespace = pod["metadata"]["namespace"]
        pdbs = self._types["policy/v1/poddisruptionbudgets"]
        labels = pod["metadata"].get("labels") or {}
        budgets = [
            b
            for b in self.iter_raw(pdbs, namespace)
            if label_selector_matcher((b.get("spec") or {}).get("selector"))(labels)
        ]
        if len(budgets) > 1:
            raise ApiError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            )
        if budgets:
            self._check_budget(budgets[0], pod, dry_run)

    def _check_budget(self, budget: JsonObject, pod: JsonObject, dry_run: bool) -> None:
        status = self.budget_status(budget)
        if not dry_run:
            self.refresh_budget(budget, status)
        healthy, desired = status["currentHealthy"], status["desiredHealthy"]
        synced = status["conditions"][0]["reason"] != "SyncFailed"
        unhealthy_allowed = synced and not is_pod_ready(pod) and healthy >= desired
        if status["disruptionsAllowed"] <= 0 and not unhealthy_allowed:
            detail = (
                f"The disruption budget {budget['metadata']['name']} needs {desired} healthy pods and has "
                f"{healthy} currently"
                if synced
                else f"The disruption budget {budget['metadata']['name']} cannot be computed: "
                f"{status['conditions'][0]['message']}"
            )
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {"causes": [{"reason": "DisruptionBudget", "message": detail}]},
            )

    def _expected_scale(self, covered: builtins.list[JsonObject]) -> tuple[int, str]:
        """The replicas the pods' controllers want, or a reason it cannot be known (as the disruption controller
        reports it: bare pods and controllers without a scale subresource, such as DaemonSets, have none)."""
        scales: dict[str, int] = {}
        for pod in covered:
            controller = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
            if controller is None:
                return 0, f'found no controller ref for pod "{pod["metadata"]["name"]}"'
            if controller["uid"] in scales:
                continue
            owner = self._lookup_uid(controller["uid"])
            if owner is None or "scale" not in owner[0].subresources:
                return 0, f"{controller.get('kind')} {controller.get('name')} has no scale subresource"
            scales[controller["uid"]] = int((owner[1].get("spec") or {}).get("replicas") or 0)
        return sum(scales.values()), ""

    def budget_status(self, budget: JsonObject) -> JsonObject:
        """The status the disruption controller would give a PodDisruptionBudget now."""
        pods = self._types["v1/pods"]
        spec = budget.get("spec") or {}
        matcher = label_selector_matcher(spec.get("selector"))
        covered = [
            p
            for p in self.iter_raw(pods, budget["metadata"]["namespace"])
            if matcher(p["metadata"].get("labels") or {})
        ]
        healthy = sum(1 for p in covered if "deletionTimestamp" not in p["metadata"] and is_pod_ready(p))
        min_available = spec.get("minAvailable")
        failure = ""
        if isinstance(min_available, int):
            expected, desired = len(covered), min_available
        else:
            expected, failure = self._expected_scale(covered)
            if "maxUnavailable" in spec:
                desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
            else:
                desired = _scaled(min_available, expected) if min_available is not None else expected
        allowed = 0 if failure else max(0, healthy - desired)
        reason = "SyncFailed" if failure else "SufficientPods" if allowed > 0 else "InsufficientPods"
        previous: JsonObject = next(
            (c for c in (budget.get("status") or {}).get("conditions") or [] if c.get("type") == "DisruptionAllowed"),
            {},
        )
        condition_status = "True" if allowed > 0 else "False"
        return {
            "observedGeneration": budget["metadata"].get("generation", 1),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": condition_status,
                    "reason": reason,
                    "message": failure,
                    "observedGeneration": budget["metadata"].get("generation", 1),
                    "lastTransitionTime": previous.get("lastTransitionTime", now_rfc3339())
                    if previous.get("status") == condition_status
                    else now_rfc3339(),
                }
            ],
        }

    def refresh_budget(self, budget: JsonObject, status: JsonObject | None = None) -> None:
        """Write a PodDisruptionBudget's current status if it changed."""
        status = status if status is not None else self.budget_status(budget)
        if status != budget.get("status"):
            self._store_update(
                self._types["policy/v1/poddisruptionbudgets"], budget, {**copy_object(budget), "status": status}
            )


def _scaled(value: int | str, total: int) -> int:
    """An int-or-percent of ``total``, rounded up as the disruption controller does."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)
