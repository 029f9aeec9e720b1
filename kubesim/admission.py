"""Admission of writes: the checks and defaults of the API server's create and update strategies (kind and
namespace of the body, names, metadata syntax, unknown fields, schemas and CEL rules of custom resources, the
rules of built-in kinds in :mod:`kubesim.kinds`, immutable and preconditioned fields) that turn a request body
into the object that would be stored."""

from __future__ import annotations

import random
import uuid
from typing import Any

from kubesim import kinds, schema, validation
from kubesim.errors import bad_request, conflict, invalid, not_found
from kubesim.objects import now_rfc3339
from kubesim.patch import copy_object
from kubesim.resource_keys import CRDS, SERVICES
from kubesim.resources import ResourceType
from kubesim.storage import Storage
from kubesim.validation import FieldValidation

JsonObject = dict[str, Any]

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
# Kinds whose creator reports the initial status (the kubelet registers its node with one).
KEEPS_STATUS_ON_CREATE = frozenset({"v1/nodes"})
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _meta(obj: JsonObject) -> JsonObject:
    meta: JsonObject = obj.setdefault("metadata", {})
    return meta


class Admission(Storage):
    """Prepares the object a create or an update would store, or refuses it with the API server's error."""

    def __init__(self, *, history_limit: int) -> None:
        super().__init__(history_limit=history_limit)
        self._cluster_ip = 0

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
        crd = self.get_raw(self._types[CRDS], None, f"{resource_type.plural}.{resource_type.group}")
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
        if resource_type.key == SERVICES:
            self._allocate_cluster_ip(obj)
        if resource_type.key == CRDS:
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

    def _body_without(self, obj: JsonObject, with_status: bool) -> JsonObject:
        skip = {"metadata", "status"} if with_status else {"metadata"}
        return {k: v for k, v in obj.items() if k not in skip}

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
