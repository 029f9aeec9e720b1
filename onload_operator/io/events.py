"""core/v1 Events, posted by the operator itself (kopf's own posting is off), aggregated as the Kubernetes event
recorder does.

An Event is keyed by its object, type, reason and series (``PostEvent.series``): the first is created, each repeat
patches that Event's ``count``, ``lastTimestamp`` and ``message`` (the latest), so a flapping node adds no object
to etcd. Writes are rate-limited per object and reason (a token bucket: a burst, then one write per interval), so
that one flapping reason can neither flood the API server nor silence the others; a repeat that is held back is
still counted, and the next write carries the total. The keys of recent Events are kept in memory only: Events are
best effort, and a patch of an Event that is gone (expired, or posted by an earlier process) creates it again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from onload_operator.actions import PostEvent
from onload_operator.io.client import MERGE_PATCH, Kube, json_of, now_rfc3339
from onload_operator.render import names

MAX_MESSAGE = 1024
KEPT_KEYS = 4096
"""Recent Event keys remembered (least recently used first out)."""
BURST = 25
"""Event writes per object and reason at once; then one per ``REFILL_SECONDS``."""
REFILL_SECONDS = 10.0

EventKey = tuple[str, str, str, str, str, str, str]
"""(namespace, kind, name, uid) of the involved object, the Event's type, reason and series."""


def event_body(action: PostEvent, instance: str, now: str) -> dict[str, Any]:
    involved = action.involved
    namespace = involved.namespace or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved.name or 'onload'}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.api_version,
            "kind": involved.kind,
            "name": involved.name,
            "namespace": namespace,
            "uid": involved.uid,
        },
        "type": action.type,
        "reason": action.reason,
        "message": action.message[:MAX_MESSAGE],
        "source": {"component": names.MANAGER},
        "reportingComponent": names.MANAGER,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def event_key(action: PostEvent) -> EventKey:
    involved = action.involved
    namespace = involved.namespace or "default"
    return (namespace, involved.kind, involved.name, involved.uid, action.type, action.reason, action.series)


@dataclass
class _Posted:
    name: str
    """The Event object's name; empty while none was created."""
    count: int
    """Occurrences, including those not written yet."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class EventRecorder:
    """Posts Events for one operator process; thread-safe. ``clock`` is monotonic seconds."""

    def __init__(self, kube: Kube, instance: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.instance = instance
        self._clock = clock
        self._lock = threading.Lock()
        self._posted: OrderedDict[EventKey, _Posted] = OrderedDict()
        self._buckets: OrderedDict[tuple[str, ...], _Bucket] = OrderedDict()

    def post(self, action: PostEvent) -> bool:
        """Create or update the Event; False when the object's rate limit held it back (it is counted)."""
        key = event_key(action)
        with self._lock:
            posted = self._posted.pop(key, None) or _Posted("", 0)
            posted.count += 1
            self._remember(key, posted)
            if not self._take_token(key[:6]):
                return False
            name, count = posted.name, posted.count
        written = self._write(action, name, count)
        with self._lock:
            if key in self._posted:
                self._posted[key].name = written
        return True

    def _remember(self, key: EventKey, posted: _Posted) -> None:
        self._posted[key] = posted
        while len(self._posted) > KEPT_KEYS:
            self._posted.popitem(last=False)

    def _take_token(self, involved: tuple[str, ...]) -> bool:
        now = self._clock()
        bucket = self._buckets.pop(involved, None) or _Bucket(float(BURST), now)
        bucket.tokens = min(float(BURST), bucket.tokens + (now - bucket.updated) / REFILL_SECONDS)
        bucket.updated = now
        self._buckets[involved] = bucket
        while len(self._buckets) > KEPT_KEYS:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _write(self, action: PostEvent, name: str, count: int) -> str:
        """Patch the Event ``name`` to ``count`` occurrences, or create it; returns its name."""
        now = now_rfc3339()
        body = event_body(action, self.instance, now)
        namespace = body["metadata"]["namespace"]
        if name:
            patch = {"count": count, "lastTimestamp": now, "message": body["message"]}
            try:
                self.kube.write(
                    "patch",
                    "events",
                    lambda: self.kube.core.patch_namespaced_event(
                        name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False
                    ),
                )
                return name
            except ApiException as error:
                if error.status != 404:
                    raise
        body["count"] = count
        created: Any = body  # the client takes a dict as well as its model
        response: Any = self.kube.write(
            "create",
            "events",
            lambda: self.kube.core.create_namespaced_event(namespace, created, _preload_content=False),
        )
        return str(json_of(response)["metadata"]["name"])
