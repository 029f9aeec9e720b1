"""The resource URL of a request: which resource type, namespace, name and subresource it addresses, the verb
it is, and its label and field selectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubesim.errors import ApiError, bad_request
from kubesim.negotiation import flag
from kubesim.resources import ResourceType, field_labels
from kubesim.selectors import ObjectPredicate, field_selector_labels, object_matcher
from kubesim.storage import Storage


@dataclass(frozen=True)
class Target:
    """A parsed resource URL."""

    resource_type: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool


def parse_target(storage: Storage, group: str, version: str, rest: list[str]) -> Target:
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace: str | None = None
    prefix = f"{group}/{version}" if group else version
    if len(rest) >= 3 and rest[0] == "namespaces":
        candidate = storage.resolve_optional(f"{prefix}/{rest[2]}")
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    resource_type = storage.resolve(f"{prefix}/{rest[0]}")
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource is not None and subresource not in resource_type.subresources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if resource_type.namespaced and name is not None and namespace is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return Target(resource_type, namespace, name, subresource, watch_path)


def verb_of(request: web.Request, target: Target) -> str:
    method = request.method
    if method == "GET":
        if target.name is not None:
            return "get"
        return "watch" if target.watch_path or flag(request.query.get("watch")) else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method ({method}) on the resource")


def request_selector(target: Target, query: Any) -> ObjectPredicate | None:
    """The label and field selectors of a request; field labels are limited to those upstream supports."""
    supported = field_labels(target.resource_type)
    for label in field_selector_labels(query.get("fieldSelector")):
        if label not in supported:
            raise bad_request(f"field label not supported: {label}")
    return object_matcher(query.get("labelSelector"), query.get("fieldSelector"))
