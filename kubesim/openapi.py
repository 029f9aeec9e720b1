"""``/openapi/v2`` and ``/openapi/v3`` documents: enough for kubectl to validate on the server side
(``fieldValidation``), to compute apply patches and to ``kubectl explain`` custom resources.

Built-in kinds are published without schemas: kubectl then uses its compiled-in types for them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubesim.errors import ApiError
from kubesim.patch import PATCH_APPLY, PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC
from kubesim.resources import ResourceType
from kubesim.store import Store

JsonObject = dict[str, Any]

_QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force")


def _gvk(resource_type: ResourceType) -> JsonObject:
    return {"group": resource_type.group, "version": resource_type.version, "kind": resource_type.kind}


def _schema_name(resource_type: ResourceType) -> str:
    group = ".".join(reversed(resource_type.group.split("."))) if resource_type.group else "io.k8s.api.core"
    return f"{group}.{resource_type.version}.{resource_type.kind}"


def _base_path(resource_type: ResourceType) -> str:
    prefix = f"/apis/{resource_type.group}/{resource_type.version}" if resource_type.group else "/api/v1"
    if resource_type.namespaced:
        prefix += "/namespaces/{namespace}"
    return f"{prefix}/{resource_type.plural}"


def _operation(resource_type: ResourceType, action: str, content_types: tuple[str, ...] = ()) -> JsonObject:
    operation: JsonObject = {
        "operationId": f"{action}{resource_type.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource_type),
        "parameters": [{"name": name, "in": "query", "schema": {"type": "string"}} for name in _QUERY_PARAMETERS],
        "responses": {"200": {"description": "OK"}},
    }
    if content_types:
        reference = {"schema": {"$ref": f"#/components/schemas/{_schema_name(resource_type)}"}}
        operation["requestBody"] = {"content": {t: reference for t in content_types}}
    return operation


def _paths(resource_type: ResourceType) -> JsonObject:
    patch_types: tuple[str, ...] = (PATCH_JSON, PATCH_MERGE, PATCH_APPLY)
    if resource_type.builtin:
        patch_types = (*patch_types, PATCH_STRATEGIC)
    base = _base_path(resource_type)
    return {
        base: {
            "get": _operation(resource_type, "list"),
            "post": _operation(resource_type, "post", ("application/json",)),
        },
        f"{base}/{{name}}": {
            "get": _operation(resource_type, "get"),
            "put": _operation(resource_type, "put", ("application/json",)),
            "patch": _operation(resource_type, "patch", patch_types),
            "delete": _operation(resource_type, "delete"),
        },
    }


def _schema(resource_type: ResourceType) -> JsonObject:
    schema: JsonObject = dict(resource_type.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    schema["x-kubernetes-group-version-kind"] = [_gvk(resource_type)]
    return schema


def _group_version_document(store: Store, group: str, version: str) -> JsonObject:
    types = [t for t in store.types() if t.group == group and t.version == version]
    if not types:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    paths: JsonObject = {}
    schemas: JsonObject = {}
    for resource_type in types:
        paths.update(_paths(resource_type))
        if resource_type.schema is not None:
            schemas[_schema_name(resource_type)] = _schema(resource_type)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _root(store: Store) -> JsonObject:
    group_versions = sorted({(t.group, t.version) for t in store.types()})
    paths = {}
    for group, version in group_versions:
        path = f"apis/{group}/{version}" if group else f"api/{version}"
        digest = (
            hashlib.sha256(
                repr(
                    sorted(
                        (t.plural, t.kind, repr(t.schema))
                        for t in store.types()
                        if (t.group, t.version) == (group, version)
                    )
                ).encode()
            )
            .hexdigest()[:32]
            .upper()
        )
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def document(store: Store, segments: list[str]) -> JsonObject:
    """The document served at ``/openapi/<segments...>``."""
    if segments == ["v2"]:
        return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": {}, "definitions": {}}
    if segments == ["v3"]:
        return _root(store)
    if len(segments) == 3 and segments[:2] == ["v3", "api"]:
        return _group_version_document(store, "", segments[2])
    if len(segments) == 4 and segments[:2] == ["v3", "apis"]:
        return _group_version_document(store, segments[2], segments[3])
    raise ApiError(404, "NotFound", "the server could not find the requested resource")
