"""The HTTP face of kubesim: discovery, OpenAPI, REST verbs, watch streams and fault injection (aiohttp)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from kubesim import kinds, openapi, protobuf, tables
from kubesim.errors import ApiError, bad_request, not_found
from kubesim.listoptions import check_list_options
from kubesim.patch import copy_object
from kubesim.resources import ResourceType, field_labels
from kubesim.selectors import ObjectPredicate, field_selector_labels, object_matcher
from kubesim.store import PATCH_APPLY, PATCH_TYPES, DeleteOptions, Store
from kubesim.validation import FieldValidation

JsonObject = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubesim"}
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(value), status=status, content_type="application/json")


def status_response(error: ApiError) -> web.Response:
    response = json_response(error.to_status(), error.code)
    if error.code == 429:
        response.headers["Retry-After"] = "1"
    return response


@dataclass
class FaultSettings:
    """Faults injected into resource requests; change them at any time, they apply to the next request."""

    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500, 429, 409)
    latency_seconds: float = 0.0
    # Probability, per delivered watch event, that the stream is cut just before the event.
    watch_drop_rate: float = 0.0
    # Restrict faults to these verbs (get, list, watch, create, update, patch, delete, ...) and resource plurals.
    verbs: frozenset[str] = field(default_factory=frozenset)
    resources: frozenset[str] = field(default_factory=frozenset)
    random: random.Random = field(default_factory=lambda: random.Random(0))
    # How many errors have been injected so far.
    injected: int = 0

    def to_json(self) -> JsonObject:
        return {
            "errorRate": self.error_rate,
            "errorCodes": list(self.error_codes),
            "latencySeconds": self.latency_seconds,
            "watchDropRate": self.watch_drop_rate,
            "verbs": sorted(self.verbs),
            "resources": sorted(self.resources),
            "injected": self.injected,
        }

    def update(self, settings: JsonObject) -> None:
        self.error_rate = float(settings.get("errorRate", self.error_rate))
        self.error_codes = tuple(int(c) for c in settings.get("errorCodes", self.error_codes))
        self.latency_seconds = float(settings.get("latencySeconds", self.latency_seconds))
        self.watch_drop_rate = float(settings.get("watchDropRate", self.watch_drop_rate))
        self.verbs = frozenset(settings.get("verbs", self.verbs))
        self.resources = frozenset(settings.get("resources", self.resources))

    def applies(self, verb: str, plural: str) -> bool:
        return (not self.verbs or verb in self.verbs) and (not self.resources or plural in self.resources)

    def injected_error(self, verb: str, plural: str) -> ApiError | None:
        if self.error_rate <= 0 or not self.applies(verb, plural) or self.random.random() >= self.error_rate:
            return None
        code = self.random.choice(self.error_codes)
        self.injected += 1
        if code == 429:
            return ApiError(429, "TooManyRequests", "injected fault: too many requests", {"retryAfterSeconds": 1})
        if code == 409:
            return ApiError(409, "Conflict", "injected fault: the object has been modified")
        return ApiError(code, "InternalError", "injected fault: an error on the server has prevented the request")


@dataclass(frozen=True)
class Target:
    """A parsed resource URL."""

    resource_type: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type == protobuf.PROTOBUF:
        return protobuf.decode_object(raw)
    if "protobuf" in content_type or "cbor" in content_type:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml, {', '.join(PATCH_TYPES)}",
        )
    try:
        if content_type == PATCH_APPLY or content_type.endswith("yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as error:
        raise bad_request(f"the body of the request could not be decoded: {error}") from None


def _field_manager(request: web.Request) -> str:
    """The fieldManager parameter, or as the API server derives it: the user agent up to its first ``/``."""
    given = request.query.get("fieldManager")
    if given:
        return given
    return request.headers.get("User-Agent", "unknown").split("/", 1)[0][:128] or "unknown"


def _encode_continue(resource_version: str, namespace: str, name: str) -> str:
    return base64.urlsafe_b64encode(dumps({"rv": resource_version, "start": [namespace, name]})).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request("continue key is not valid") from None
    return str(namespace), str(name)


class _WatchStream:
    """One open watch: events queued by the store listener, drained by the HTTP handler."""

    def __init__(self) -> None:
        self.events: list[tuple[str, JsonObject]] = []
        self.wakeup = asyncio.Event()
        self.closed = False
        self.dropped = False

    def push(self, kind: str, obj: JsonObject) -> None:
        self.events.append((kind, obj))
        self.wakeup.set()

    def close(self, *, drop: bool) -> None:
        self.closed = True
        self.dropped = drop
        self.wakeup.set()


class ApiServer:
    """Routes Kubernetes REST requests to a :class:`Store`."""

    def __init__(self, store: Store, *, bookmark_interval: float = 10.0, faults: FaultSettings | None = None) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.faults = faults or FaultSettings()
        self._watches: set[_WatchStream] = set()
        self.app = web.Application(middlewares=[self._errors_middleware], client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.app.on_shutdown.append(self._close_watches)

    def drop_watches(self) -> None:
        """Cut every open watch stream, as a load balancer or an API server restart does."""
        for stream in list(self._watches):
            stream.close(drop=True)

    async def _close_watches(self, _: web.Application) -> None:
        for stream in list(self._watches):
            stream.close(drop=False)

    @web.middleware
    async def _errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return status_response(error)

    # --- routing -------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        simple = self._simple_routes().get(path)
        if simple is not None:
            return await simple(request)
        segments = path.strip("/").split("/")
        if segments[0] == "openapi":
            return json_response(openapi.document(self.store, segments[1:]))
        if segments[0] == "kubesim" and segments[1:] == ["v1", "faults"]:
            return await self._faults_endpoint(request)
        if segments[0] == "api" and len(segments) >= 2:
            return await self._resource_request(request, "", segments[1], segments[2:])
        if segments[0] == "apis" and len(segments) >= 2:
            if len(segments) == 2:
                return json_response(self._api_group(segments[1]))
            return await self._resource_request(request, segments[1], segments[2], segments[3:])
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _simple_routes(self) -> dict[str, Callable[[web.Request], Awaitable[web.Response]]]:
        async def text_ok(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def version(_: web.Request) -> web.Response:
            return json_response(
                {
                    **KUBERNETES_VERSION,
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.23",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )

        async def api(request: web.Request) -> web.Response:
            return json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
                }
            )

        async def apis(_: web.Request) -> web.Response:
            return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})

        return {
            "/healthz": text_ok,
            "/readyz": text_ok,
            "/livez": text_ok,
            "/version": version,
            "/api": api,
            "/apis": apis,
        }

    # --- discovery -----------------------------------------------------------------------------------

    def _groups(self) -> list[JsonObject]:
        versions: dict[str, list[str]] = {}
        preferred: dict[str, str] = {}
        for resource_type in self.store.types():
            if not resource_type.group:
                continue
            group_versions = versions.setdefault(resource_type.group, [])
            if resource_type.version not in group_versions:
                group_versions.append(resource_type.version)
            if resource_type.version == resource_type.storage_version:
                preferred[resource_type.group] = resource_type.version
        return [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in group_versions],
                "preferredVersion": {
                    "groupVersion": f"{group}/{preferred.get(group, group_versions[0])}",
                    "version": preferred.get(group, group_versions[0]),
                },
            }
            for group, group_versions in sorted(versions.items())
        ]

    def _api_group(self, name: str) -> JsonObject:
        group = next((g for g in self._groups() if g["name"] == name), None)
        if group is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **group}

    def _resource_list(self, group: str, version: str) -> JsonObject:
        resources: list[JsonObject] = []
        for resource_type in self.store.types():
            if resource_type.group != group or resource_type.version != version:
                continue
            entry: JsonObject = {
                "name": resource_type.plural,
                "singularName": resource_type.singular_name(),
                "namespaced": resource_type.namespaced,
                "kind": resource_type.kind,
                "verbs": list(resource_type.verbs),
            }
            if resource_type.short_names:
                entry["shortNames"] = list(resource_type.short_names)
            if resource_type.categories:
                entry["categories"] = list(resource_type.categories)
            resources.append(entry)
            resources.extend(self._subresource_entries(resource_type))
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    def _subresource_entries(self, resource_type: ResourceType) -> list[JsonObject]:
        entries = []
        for sub in sorted(resource_type.subresources):
            entry: JsonObject = {
                "name": f"{resource_type.plural}/{sub}",
                "singularName": "",
                "namespaced": resource_type.namespaced,
                "kind": resource_type.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "eviction":
                entry.update({"group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
            elif sub == "binding":
                entry.update({"kind": "Binding", "verbs": ["create"]})
            elif sub == "log":
                entry.update({"verbs": ["get"]})
            elif sub == "finalize":
                entry["verbs"] = ["update"]
            elif sub == "scale":
                entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            entries.append(entry)
        return entries

    # --- resource requests ---------------------------------------------------------------------------

    def _parse_target(self, group: str, version: str, rest: list[str]) -> Target:
        watch_path = bool(rest) and rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        namespace: str | None = None
        prefix = f"{group}/{version}" if group else version
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = self.store.resolve_optional(f"{prefix}/{rest[2]}")
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resource_type = self.store.resolve(f"{prefix}/{rest[0]}")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and subresource not in resource_type.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if resource_type.namespaced and name is not None and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Target(resource_type, namespace, name, subresource, watch_path)

    @staticmethod
    def _verb(request: web.Request, target: Target) -> str:
        method = request.method
        if method == "GET":
            if target.name is not None:
                return "get"
            return "watch" if target.watch_path or _flag(request.query.get("watch")) else "list"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "delete" if target.name is not None else "deletecollection"
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method ({method}) on the resource")

    async def _resource_request(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        if not rest:
            return json_response(self._resource_list(group, version))
        target = self._parse_target(group, version, rest)
        verb = self._verb(request, target)
        if self.faults.latency_seconds > 0 and self.faults.applies(verb, target.resource_type.plural):
            await asyncio.sleep(self.faults.latency_seconds)
        injected = self.faults.injected_error(verb, target.resource_type.plural)
        if injected is not None:
            raise injected
        raw = await request.read()
        query = request.query
        if verb in ("list", "watch"):
            check_list_options(query, watch=verb == "watch")
        if verb == "get":
            return self._get(request, target)
        if verb == "list":
            return self._list(request, target)
        if verb == "watch":
            return await self._watch(request, target)
        if verb == "deletecollection":
            return self._delete_collection(target, query, _body(raw, "application/json"))
        assert target.name is not None or verb == "create"
        return self._write(request, target, verb, raw)

    def _write(self, request: web.Request, target: Target, verb: str, raw: bytes) -> web.Response:
        field_validation = FieldValidation.from_query(request.query.get("fieldValidation"))
        response = self._write_with(request, target, verb, raw, field_validation)
        for warning in field_validation.warnings:
            response.headers.add("Warning", '299 - "' + warning.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return response

    def _write_with(
        self, request: web.Request, target: Target, verb: str, raw: bytes, field_validation: FieldValidation
    ) -> web.Response:
        query = request.query
        dry_run = query.get("dryRun") == "All"
        content_type = request.content_type
        resource_type = target.resource_type
        if verb == "create":
            return self._create(request, target, _body(raw, content_type), dry_run, field_validation)
        assert target.name is not None
        if verb == "update":
            body = _body(raw, content_type)
            return json_response(self._update(target, body, dry_run, request, field_validation))
        if verb == "patch":
            if content_type not in PATCH_TYPES:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(PATCH_TYPES)}",
                )
            existed = self.store.get_raw(resource_type, target.namespace, target.name) is not None
            patched = self.store.patch_raw(
                resource_type,
                target.namespace,
                target.name,
                content_type,
                _body(raw, content_type),
                subresource=target.subresource,
                # Apply needs an explicit manager; other patches default to the user agent.
                field_manager=query.get("fieldManager") if content_type == PATCH_APPLY else _field_manager(request),
                force=_flag(query.get("force")),
                dry_run=dry_run,
                field_validation=None if content_type == PATCH_APPLY else field_validation,
            )
            return json_response(patched, 200 if existed else 201)
        options = DeleteOptions.from_body(_body(raw, "application/json"), dry_run=dry_run)
        options = self._delete_query_options(options, query)
        result = self.store.delete_raw(resource_type, target.namespace, target.name, options)
        remaining = self.store.get_raw(resource_type, target.namespace, target.name)
        if remaining is not None and remaining["metadata"]["uid"] == result["metadata"]["uid"]:
            return json_response(result)  # terminating: finalizers or a graceful pod deletion hold it
        return json_response(kinds.deleted_status(resource_type.key, resource_type.group, resource_type.plural, result))

    @staticmethod
    def _delete_query_options(options: DeleteOptions, query: Any) -> DeleteOptions:
        propagation = query.get("propagationPolicy") or options.propagation
        if _flag(query.get("orphanDependents")):
            propagation = "Orphan"
        grace = query.get("gracePeriodSeconds")
        return DeleteOptions(
            propagation=propagation,
            grace_period_seconds=int(grace) if grace is not None else options.grace_period_seconds,
            precondition_uid=options.precondition_uid,
            precondition_resource_version=options.precondition_resource_version,
            dry_run=options.dry_run,
        )

    def _namespaced_body(self, target: Target, body: Any) -> JsonObject:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        meta = body.setdefault("metadata", {})
        if target.resource_type.namespaced:
            if meta.get("namespace") not in (None, "", target.namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = target.namespace
        return body

    def _create(
        self, request: web.Request, target: Target, body: Any, dry_run: bool, field_validation: FieldValidation
    ) -> web.Response:
        if target.name is not None:
            if target.subresource == "eviction":
                return self._evict(target, body, dry_run)
            if target.subresource == "binding":
                return self._bind(target, body)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if target.resource_type.namespaced and target.namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        body = self._namespaced_body(target, body)
        created = self.store.create_raw(
            target.resource_type,
            body,
            dry_run=dry_run,
            field_manager=_field_manager(request),
            field_validation=field_validation,
        )
        return json_response(created, 201)

    def _update(
        self, target: Target, body: Any, dry_run: bool, request: web.Request, field_validation: FieldValidation
    ) -> JsonObject:
        body = self._namespaced_body(target, body)
        assert target.name is not None
        if body["metadata"].get("name") not in (None, target.name):
            raise bad_request(
                f"the name of the object ({body['metadata'].get('name')}) does not match the name on the URL "
                f"({target.name})"
            )
        body["metadata"]["name"] = target.name
        if target.subresource == "finalize":
            return self._finalize_namespace(target, body)
        return self.store.update_raw(
            target.resource_type,
            body,
            subresource=target.subresource,
            dry_run=dry_run,
            require_resource_version=not target.resource_type.builtin,
            field_manager=_field_manager(request),
            field_validation=field_validation,
        )

    def _finalize_namespace(self, target: Target, body: JsonObject) -> JsonObject:
        current = self.store.get_raw(target.resource_type, None, target.name or "")
        if current is None:
            raise not_found("namespaces", target.name or "")
        new = copy_object(current)
        new.setdefault("spec", {})["finalizers"] = (body.get("spec") or {}).get("finalizers") or []
        return self.store.update_raw(target.resource_type, new)

    def _evict(self, target: Target, body: Any, dry_run: bool) -> web.Response:
        assert target.name is not None
        assert target.namespace is not None
        delete_options = body.get("deleteOptions") if isinstance(body, dict) else None
        self.store.evict(target.namespace, target.name, delete_options, dry_run=dry_run)
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    def _bind(self, target: Target, body: Any) -> web.Response:
        node = ((body or {}).get("target") or {}).get("name")
        if not node:
            raise bad_request("a binding needs target.name")
        assert target.namespace is not None
        self.store.bind_pod(target.namespace, target.name or "", node)
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    # --- reads ---------------------------------------------------------------------------------------

    @staticmethod
    def _selector(target: Target, query: Any) -> ObjectPredicate | None:
        """The label and field selectors of a request; field labels are limited to those upstream supports."""
        supported = field_labels(target.resource_type)
        for label in field_selector_labels(query.get("fieldSelector")):
            if label not in supported:
                raise bad_request(f"field label not supported: {label}")
        return object_matcher(query.get("labelSelector"), query.get("fieldSelector"))

    @staticmethod
    def _wants_table(request: web.Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def _get(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        found = self.store.get_raw(target.resource_type, target.namespace, target.name)
        if found is None:
            raise not_found(target.resource_type.group_resource, target.name)
        if target.subresource == "log":
            return self._pod_log(found, request.query.get("container"))
        if self._wants_table(request) and target.subresource is None:
            return json_response(
                tables.table(
                    target.resource_type,
                    [found],
                    resource_version=found["metadata"]["resourceVersion"],
                    include_object=request.query.get("includeObject", "Metadata"),
                )
            )
        return json_response(found)

    @staticmethod
    def _pod_log(pod: JsonObject, container: str | None) -> web.Response:
        """pods/log: kubesim runs no container, so the log says so (one line, as ``kubectl logs`` prints it)."""
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        names += [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
        if container is None and len(names) > 1:
            raise bad_request(
                f"a container name must be specified for pod {pod['metadata']['name']}, choose one of: {names}"
            )
        chosen = container or (names[0] if names else "")
        if chosen not in names:
            raise bad_request(f"container {chosen} is not valid for pod {pod['metadata']['name']}")
        meta = pod["metadata"]
        line = (
            f"kubesim: pod {meta.get('namespace')}/{meta['name']} (container {chosen}) is simulated: "
            "its containers are never run, so there is no log\n"
        )
        return web.Response(text=line, content_type="text/plain")

    def _list(self, request: web.Request, target: Target) -> web.Response:
        query = request.query
        resource_type = target.resource_type
        predicate = self._selector(target, query)
        limit = int(query.get("limit") or 0)
        start = _decode_continue(query["continue"]) if query.get("continue") else None
        resource_version = self.store.resource_version
        items: list[JsonObject] = []
        list_meta: JsonObject = {}
        objects = self.store.iter_raw(resource_type, target.namespace, predicate, after=start)
        for obj in objects:
            if limit and len(items) == limit:
                last = items[-1]["metadata"]
                position = (last.get("namespace", ""), last["name"])
                list_meta["continue"] = _encode_continue(resource_version, *position)
                if predicate is None:
                    list_meta["remainingItemCount"] = self.store.count_after(resource_type, target.namespace, position)
                break
            items.append(obj)
        if self._wants_table(request):
            return json_response(
                tables.table(
                    resource_type,
                    items,
                    resource_version=resource_version,
                    include_object=query.get("includeObject", "Metadata"),
                    list_meta=list_meta,
                )
            )
        body = {
            "kind": f"{resource_type.kind}List",
            "apiVersion": resource_type.api_version,
            "metadata": {"resourceVersion": resource_version, **list_meta},
            "items": items,
        }
        return json_response(body)

    def _delete_collection(self, target: Target, query: Any, body: Any) -> web.Response:
        resource_type = target.resource_type
        predicate = self._selector(target, query)
        options = self._delete_query_options(
            DeleteOptions.from_body(body if isinstance(body, dict) else None, dry_run=query.get("dryRun") == "All"),
            query,
        )
        deleted = self.store.delete_collection_raw(resource_type, target.namespace, predicate, options)
        return json_response(
            {
                "kind": f"{resource_type.kind}List",
                "apiVersion": resource_type.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": deleted,
            }
        )

    # --- watch ---------------------------------------------------------------------------------------

    def _initial_events(
        self, target: Target, predicate: ObjectPredicate | None, query: Any
    ) -> tuple[list[tuple[str, JsonObject]], bool, bool]:
        """Events a new watch starts with, whether they are the listed current state (not a replayed history)
        and whether they end with an initial-events-end bookmark."""
        since = query.get("resourceVersion")
        send_initial = _flag(query.get("sendInitialEvents"))
        resource_type = target.resource_type
        if since in (None, "", "0") or send_initial:
            current = [("ADDED", o) for o in self.store.iter_raw(resource_type, target.namespace, predicate)]
            return current, True, send_initial
        try:
            version = int(since)
        except ValueError:
            raise bad_request(f"invalid resource version {since!r}") from None
        return self.store.history_since(resource_type, version), False, False

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        query = request.query
        predicate = self._selector(target, query)
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        stream = _WatchStream()
        error: ApiError | None = None
        try:
            initial, listed, end_bookmark = self._initial_events(target, predicate, query)
        except ApiError as expired:
            initial, listed, end_bookmark, error = [], False, False, expired
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if error is not None:
            await response.write(dumps({"type": "ERROR", "object": error.to_status()}) + b"\n")
            await response.write_eof()
            return response
        table_rows = query.get("includeObject", "Metadata") if self._wants_table(request) else None
        filtered = _WatchFilter(self.store, target, predicate, table_rows)
        if not listed:
            filtered.forget_added(initial)
        unsubscribe = self.store.listen(target.resource_type, stream.push)
        self._watches.add(stream)
        try:
            lines = [filtered.line(kind, obj, listed=listed) for kind, obj in initial]
            if end_bookmark:
                lines.append(self._bookmark(target.resource_type, initial_end=True))
            await self._send(response, [line for line in lines if line])
            await self._pump(request, response, stream, filtered, bookmarks, timeout)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
            self._watches.discard(stream)
        if stream.dropped and request.transport is not None:
            request.transport.abort()
            return response
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _pump(
        self,
        request: web.Request,
        response: web.StreamResponse,
        stream: _WatchStream,
        filtered: _WatchFilter,
        bookmarks: bool,
        duration: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        next_bookmark = loop.time() + self.bookmark_interval
        while not stream.closed:
            wait = min(1.0, next_bookmark - loop.time()) if bookmarks else 1.0
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
            if wait > 0 and not stream.events:
                stream.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stream.wakeup.wait(), wait)
            if request.transport is None or request.transport.is_closing():
                return
            if self.store.resolve_optional(filtered.target.resource_type.key) is None:
                return  # the CRD serving this resource is gone
            if deadline is not None and loop.time() >= deadline:
                return
            events, stream.events = stream.events, []
            lines = []
            for kind, obj in events:
                if self.faults.watch_drop_rate > 0 and self.faults.random.random() < self.faults.watch_drop_rate:
                    stream.close(drop=True)
                    break
                line = filtered.line(kind, obj, listed=False)
                if line:
                    lines.append(line)
            if bookmarks and loop.time() >= next_bookmark:
                lines.append(self._bookmark(filtered.target.resource_type, initial_end=False))
                next_bookmark = loop.time() + self.bookmark_interval
            await self._send(response, lines)

    async def _send(self, response: web.StreamResponse, lines: list[bytes]) -> None:
        if lines:
            await response.write(b"".join(lines))

    def _bookmark(self, resource_type: ResourceType, *, initial_end: bool) -> bytes:
        metadata: JsonObject = {"resourceVersion": self.store.resource_version}
        if initial_end:
            metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
        bookmark = {"kind": resource_type.kind, "apiVersion": resource_type.api_version, "metadata": metadata}
        return dumps({"type": "BOOKMARK", "object": bookmark}) + b"\n"

    # --- fault endpoint ------------------------------------------------------------------------------

    async def _faults_endpoint(self, request: web.Request) -> web.Response:
        if request.method in ("PUT", "POST", "PATCH"):
            body = _body(await request.read(), "application/json")
            if not isinstance(body, dict):
                raise bad_request("fault settings must be a JSON object")
            self.faults.update(body)
            if body.get("dropWatches"):
                self.drop_watches()
        elif request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "use GET or PUT")
        return json_response(self.faults.to_json())


class _WatchFilter:
    """Turns store changes into watch lines for one watch, honouring its namespace and selectors.

    With a selector, an object that starts matching is reported ADDED and one that stops matching DELETED,
    as the API server's watch cache does.
    """

    def __init__(self, store: Store, target: Target, predicate: ObjectPredicate | None, table_rows: str | None) -> None:
        self.store = store
        self.target = target
        self.predicate = predicate
        # With ``as=Table`` (kubectl get --watch) each event carries a one-row Table; the value is includeObject.
        self.table_rows = table_rows
        # The objects that match, as they last matched (stored objects, never mutated).
        self.matching: dict[tuple[str, str], JsonObject] = {}
        if predicate is not None:
            for obj in store.iter_raw(target.resource_type, target.namespace, predicate):
                self.matching[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj

    def forget_added(self, events: list[tuple[str, JsonObject]]) -> None:
        """Objects added after a replayed resourceVersion did not exist at that version."""
        for kind, obj in events:
            if kind == "ADDED":
                self.matching.pop((obj["metadata"].get("namespace", ""), obj["metadata"]["name"]), None)

    def line(self, kind: str, obj: JsonObject, *, listed: bool) -> bytes | None:
        """The watch line for a change, or None when this watch does not see it.

        ``listed`` marks the synthetic ADDED events of the current state, already filtered.
        """
        meta = obj["metadata"]
        namespace = self.target.namespace
        if namespace is not None and self.target.resource_type.namespaced and meta.get("namespace") != namespace:
            return None
        if self.predicate is not None and not listed:
            key = (meta.get("namespace", ""), meta["name"])
            matches = self.predicate(obj)
            last_match = self.matching.pop(key, None)
            if matches and kind != "DELETED":
                self.matching[key] = obj
                kind = "ADDED" if kind == "ADDED" or last_match is None else "MODIFIED"
            elif last_match is None and not matches:
                return None
            else:
                kind = "DELETED"
                if last_match is not None and not matches:
                    # As the watch cache does: the object as it last matched, at the version of this change.
                    obj = {
                        **last_match,
                        "metadata": {**last_match["metadata"], "resourceVersion": meta["resourceVersion"]},
                    }
        presented = self.store.present(self.target.resource_type, obj)
        if self.table_rows is not None:
            presented = tables.table(
                self.target.resource_type,
                [presented],
                resource_version=meta["resourceVersion"],
                include_object=self.table_rows,
            )
        return dumps({"type": kind, "object": presented}) + b"\n"
