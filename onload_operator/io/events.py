"""core/v1 Events, posted by the operator itself (kopf's own posting is off)."""

from __future__ import annotations

from typing import Any

from onload_operator.actions import PostEvent
from onload_operator.io.client import Kube, now_rfc3339
from onload_operator.render import names

MAX_MESSAGE = 1024


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


def post_event(kube: Kube, instance: str, action: PostEvent) -> None:
    body: Any = event_body(action, instance, now_rfc3339())
    namespace = body["metadata"]["namespace"]
    kube.write("create", "events", lambda: kube.core.create_namespaced_event(namespace, body, _preload_content=False))
