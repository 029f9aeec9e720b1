"""Deletion and what the API server's process does after it: finalizers and graceful pod termination, deletion
propagation and garbage collection by ownerReferences, Terminating namespaces and the removal of a CRD's custom
resources. The controllers that do this in a cluster run here within one loop turn."""

from __future__ import annotations

import asyncio
import builtins
from dataclasses import dataclass
from typing import Any

from kubesim.admission import CRD_CLEANUP_FINALIZER, Admission
from kubesim.errors import conflict
from kubesim.objects import now_rfc3339
from kubesim.patch import copy_object
from kubesim.resource_keys import CRDS, NAMESPACES, PODS
from kubesim.resources import ResourceType
from kubesim.selectors import ObjectPredicate
from kubesim.storage import owner_uids

JsonObject = dict[str, Any]

FOREGROUND_FINALIZER = "foregroundDeletion"


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


class Lifecycle(Admission):
    """Deletes objects and collects what depends on them."""

    def __init__(self, *, history_limit: int, graceful_pod_deletion: bool) -> None:
        super().__init__(history_limit=history_limit)
        # Seconds between a namespace turning Terminating and the deletion of its content.
        self.namespace_cleanup_delay = 0.2
        # When true, deleting a pod bound to a node only marks it terminating; the kubelet finishes the deletion.
        self.graceful_pod_deletion = graceful_pod_deletion

    def _store_update(self, resource_type: ResourceType, old: JsonObject, new: JsonObject) -> JsonObject:
        """Commit an update unless it changes nothing; remove the object once its last finalizer is gone."""
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return old
        if "deletionTimestamp" in new["metadata"] and not new["metadata"].get("finalizers"):
            return self._remove(resource_type, new)
        committed = self._commit(resource_type, new, "MODIFIED")
        if resource_type.key == CRDS and "deletionTimestamp" not in new["metadata"]:
            self._sync_crd_types(committed, old)
        return committed

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
        if resource_type.key == NAMESPACES:
            return self._delete_namespace(obj)
        if resource_type.key == PODS and self._pod_needs_graceful_termination(obj, options):
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
        if resource_type.key == CRDS:
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
        for owner_uid in owner_uids(removed):
            self._finish_foreground(owner_uid)
        namespace = meta.get("namespace")
        if namespace in self._terminating_namespaces:
            self._finish_namespace(namespace)
        if resource_type.key == CRDS:
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
        terminating = self._commit(self._types[NAMESPACES], new, "MODIFIED")
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
        namespaces = self._types[NAMESPACES]
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
        crds = self._types[CRDS]
        crd = self.get_raw(crds, None, f"{resource_type.plural}.{resource_type.group}")
        if crd is None or "deletionTimestamp" not in crd["metadata"]:
            return
        new = copy_object(crd)
        new["metadata"]["finalizers"] = [f for f in crd["metadata"].get("finalizers", []) if f != CRD_CLEANUP_FINALIZER]
        self._store_update(crds, crd, new)
