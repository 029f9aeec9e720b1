"""The object store: the single source of truth behind the HTTP API and the simulated controllers.

``Store`` stacks the API server's layers: :mod:`kubesim.storage` (objects, resourceVersions, history,
listeners), :mod:`kubesim.admission` (what a write would store), :mod:`kubesim.lifecycle` (deletion and garbage
collection) and :mod:`kubesim.eviction` (pods/eviction and budgets); here are the write verbs themselves (create,
update, patch and server-side apply, pods/binding) and the :class:`kubesim.objectstore.ObjectStore` protocol,
whose methods hand out copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubesim import apply
from kubesim.errors import ApiError, already_exists, bad_request, invalid, not_found
from kubesim.eviction import EvictedPod, Eviction
from kubesim.lifecycle import DeleteOptions
from kubesim.objects import now_rfc3339
from kubesim.objectstore import WatchEvent
from kubesim.patch import (
    PATCH_APPLY,
    PATCH_JSON,
    PATCH_MERGE,
    PATCH_STRATEGIC,
    PATCH_TYPES,
    copy_object,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from kubesim.resource_keys import CRDS, PODS
from kubesim.resources import ResourceType
from kubesim.selectors import object_matcher
from kubesim.validation import FieldValidation

JsonObject = dict[str, Any]

__all__ = [
    "CRD_RESOURCE",
    "PATCH_APPLY",
    "PATCH_JSON",
    "PATCH_MERGE",
    "PATCH_STRATEGIC",
    "PATCH_TYPES",
    "DeleteOptions",
    "EvictedPod",
    "Store",
]

CRD_RESOURCE = CRDS


def _list_types(resource_type: ResourceType) -> apply.ListTypes:
    if resource_type.builtin:
        return apply.BUILTIN_LISTS
    return apply.SchemaListTypes(resource_type.schema or {})


class Store(Eviction):
    """In-memory API objects with Kubernetes write semantics; implements ``kubesim.objectstore.ObjectStore``."""

    def __init__(self, *, history_limit: int = 20_000, graceful_pod_deletion: bool = False) -> None:
        super().__init__(history_limit=history_limit, graceful_pod_deletion=graceful_pod_deletion)

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
        if resource_type.key == CRDS:
            self._sync_crd_types(committed, None)
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

    # --- pods ----------------------------------------------------------------------------------------

    def bind_pod(self, namespace: str, name: str, node: str) -> JsonObject:
        """pods/binding: assign an unscheduled pod to a node (409 when it already has one)."""
        pods = self._types[PODS]
        pod = self._existing(pods, namespace, name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise ApiError(409, "Conflict", f'pod {name} is already assigned to node "{current}"')
        bound = copy_object(pod)
        bound.setdefault("spec", {})["nodeName"] = node
        return self._store_update(pods, pod, bound)
