"""Watch fan-out: each open watch follows the store's listener of its resource, filters the changes by namespace
and selectors (objects entering and leaving a selector become ADDED and DELETED, as in the watch cache) and
streams them as newline-delimited JSON, with bookmarks, timeouts and the faults that cut streams."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from kubesim import tables
from kubesim.errors import ApiError, bad_request
from kubesim.faults import FaultSettings
from kubesim.negotiation import dumps, flag, wants_table
from kubesim.resources import ResourceType
from kubesim.routing import Target, request_selector
from kubesim.selectors import ObjectPredicate
from kubesim.storage import Storage

JsonObject = dict[str, Any]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


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


class Watches:
    """The open watches of an API server."""

    def __init__(self, store: Storage, faults: FaultSettings, bookmark_interval: float) -> None:
        self.store = store
        self.faults = faults
        self.bookmark_interval = bookmark_interval
        self._streams: set[_WatchStream] = set()

    def drop(self) -> None:
        """Cut every open watch stream, as a load balancer or an API server restart does."""
        for stream in list(self._streams):
            stream.close(drop=True)

    def close(self) -> None:
        """End every open watch stream normally (server shutdown)."""
        for stream in list(self._streams):
            stream.close(drop=False)

    def _initial_events(
        self, target: Target, predicate: ObjectPredicate | None, query: Any
    ) -> tuple[list[tuple[str, JsonObject]], bool, bool]:
        """Events a new watch starts with, whether they are the listed current state (not a replayed history)
        and whether they end with an initial-events-end bookmark."""
        since = query.get("resourceVersion")
        send_initial = flag(query.get("sendInitialEvents"))
        resource_type = target.resource_type
        if since in (None, "", "0") or send_initial:
            current = [("ADDED", o) for o in self.store.iter_raw(resource_type, target.namespace, predicate)]
            return current, True, send_initial
        try:
            version = int(since)
        except ValueError:
            raise bad_request(f"invalid resource version {since!r}") from None
        return self.store.history_since(resource_type, version), False, False

    async def serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        query = request.query
        predicate = request_selector(target, query)
        bookmarks = flag(query.get("allowWatchBookmarks"))
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
        table_rows = query.get("includeObject", "Metadata") if wants_table(request) else None
        filtered = _WatchFilter(self.store, target, predicate, table_rows)
        if not listed:
            filtered.forget_added(initial)
        unsubscribe = self.store.listen(target.resource_type, stream.push)
        self._streams.add(stream)
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
            self._streams.discard(stream)
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


class _WatchFilter:
    """Turns store changes into watch lines for one watch, honouring its namespace and selectors.

    With a selector, an object that starts matching is reported ADDED and one that stops matching DELETED,
    as the API server's watch cache does.
    """

    def __init__(
        self, store: Storage, target: Target, predicate: ObjectPredicate | None, table_rows: str | None
    ) -> None:
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
