"""Reading API objects the way every part of kubesim does: timestamps and Ready conditions."""

import time
from datetime import UTC, datetime
from typing import Any

JsonObject = dict[str, Any]


def now_rfc3339(offset_seconds: float = 0) -> str:
    """The current time (plus an offset) as API timestamps are written, to the second."""
    return datetime.fromtimestamp(time.time() + offset_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _condition_true(obj: JsonObject | None, kind: str) -> bool:
    if obj is None:
        return False
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


def is_pod_ready(pod: JsonObject) -> bool:
    return _condition_true(pod, "Ready")


def is_node_ready(node: JsonObject | None) -> bool:
    return _condition_true(node, "Ready")
