"""The HTTP face of kubesim: routes Kubernetes REST requests to the store (aiohttp).

The API server's other concerns live beside it: :mod:`kubesim.routing` (the resource URL), :mod:`kubesim.negotiation`
(bodies and responses), :mod:`kubesim.discovery`, :mod:`kubesim.watch` (watch fan-out), :mod:`kubesim.listoptions`
(list and watch options) and :mod:`kubesim.faults` (fault injection).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kubesim import kinds, openapi, tables
from kubesim.discovery import Discovery
from kubesim.errors import ApiError, bad_request, not_found
from kubesim.faults import FaultSettings
from kubesim.listoptions import check_list_options
from kubesim.negotiation import add_warnings, decode_body, dumps, flag, json_response, status_response, wants_table
from kubesim.patch import PATCH_APPLY, PATCH_TYPES, copy_object
from kubesim.routing import Target, parse_target, request_selector, verb_of
from kubesim.store import DeleteOptions, Store
from kubesim.validation import FieldValidation
from kubesim.watch import Watches

__all__ = ["ApiServer", "FaultSettings"]

JsonObject = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


class ApiServer:
    """Routes Kubernetes REST requests to a :class:`Store`."""

    def __init__(self, store: Store, *, bookmark_interval: float = 10.0, faults: FaultSettings | None = None) -> None:
        self.store = store
        self.faults = faults or FaultSettings()
        self.discovery = Discovery(store)
        self.watches = Watches(store, self.faults, bookmark_interval)
        self.app = web.Application(middlewares=[self._errors_middleware], client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.app.on_shutdown.append(self._close_watches)

    def drop_watches(self) -> None:
        """Cut every open watch stream, as a load balancer or an API server restart does."""
        self.watches.drop()

    async def _close_watches(self, _: web.Application) -> None:
        self.watches.close()

    @web.middleware
    async def _errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return status_response(error)

    # --- routing -------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        simple = self.discovery.simple_routes().get(path)
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
                return json_response(self.discovery.api_group(segments[1]))
            return await self._resource_request(request, segments[1], segments[2], segments[3:])
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # --- resource requests ---------------------------------------------------------------------------

    async def _resource_request(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        if not rest:
            return json_response(self.discovery.resource_list(group, version))
        target = parse_target(self.store, group, version, rest)
        verb = verb_of(request, target)
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
            return await self.watches.serve(request, target)
        if verb == "deletecollection":
            return self._delete_collection(target, query, decode_body(raw, "application/json"))
        assert target.name is not None or verb == "create"
        return self._write(request, target, verb, raw)

    def _write(self, request: web.Request, target: Target, verb: str, raw: bytes) -> web.Response:
        field_validation = FieldValidation.from_query(request.query.get("fieldValidation"))
        response = self._write_with(request, target, verb, raw, field_validation)
        add_warnings(response, field_validation.warnings)
        return response

    def _write_with(
        self, request: web.Request, target: Target, verb: str, raw: bytes, field_validation: FieldValidation
    ) -> web.Response:
        query = request.query
        dry_run = query.get("dryRun") == "All"
        content_type = request.content_type
        resource_type = target.resource_type
        if verb == "create":
            return self._create(request, target, decode_body(raw, content_type), dry_run, field_validation)
        assert target.name is not None
        if verb == "update":
            body = decode_body(raw, content_type)
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
                decode_body(raw, content_type),
                subresource=target.subresource,
                # Apply needs an explicit manager; other patches default to the user agent.
                field_manager=query.get("fieldManager") if content_type == PATCH_APPLY else _field_manager(request),
                force=flag(query.get("force")),
                dry_run=dry_run,
                field_validation=None if content_type == PATCH_APPLY else field_validation,
            )
            return json_response(patched, 200 if existed else 201)
        options = DeleteOptions.from_body(decode_body(raw, "application/json"), dry_run=dry_run)
        options = self._delete_query_options(options, query)
        result = self.store.delete_raw(resource_type, target.namespace, target.name, options)
        remaining = self.store.get_raw(resource_type, target.namespace, target.name)
        if remaining is not None and remaining["metadata"]["uid"] == result["metadata"]["uid"]:
            return json_response(result)  # terminating: finalizers or a graceful pod deletion hold it
        return json_response(kinds.deleted_status(resource_type.key, resource_type.group, resource_type.plural, result))

    @staticmethod
    def _delete_query_options(options: DeleteOptions, query: Any) -> DeleteOptions:
        propagation = query.get("propagationPolicy") or options.propagation
        if flag(query.get("orphanDependents")):
            propagation = "Orphan"
        grace = query.get("gracePeriodSeconds")
        return DeleteOptions(
            propagation=propagation,
            grace_period_seconds=int(grace) if grace is not None else options.grace_period_seconds,
            precondition_uid=options.precondition_uid,
            precondition_resource_version=options.precondition_resource_version,
            dry_run=options.dry_run,
        )

    def _namespaceddecode_body(self, target: Target, body: Any) -> JsonObject:
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
        body = self._namespaceddecode_body(target, body)
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
        body = self._namespaceddecode_body(target, body)
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

    def _get(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        found = self.store.get_raw(target.resource_type, target.namespace, target.name)
        if found is None:
            raise not_found(target.resource_type.group_resource, target.name)
        if target.subresource == "log":
            return self._pod_log(found, request.query.get("container"))
        if wants_table(request) and target.subresource is None:
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
        predicate = request_selector(target, query)
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
        if wants_table(request):
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
        predicate = request_selector(target, query)
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

    # --- fault endpoint ------------------------------------------------------------------------------

    async def _faults_endpoint(self, request: web.Request) -> web.Response:
        if request.method in ("PUT", "POST", "PATCH"):
            body = decode_body(await request.read(), "application/json")
            if not isinstance(body, dict):
                raise bad_request("fault settings must be a JSON object")
            self.faults.update(body)
            if body.get("dropWatches"):
                self.drop_watches()
        elif request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "use GET or PUT")
        return json_response(self.faults.to_json())
