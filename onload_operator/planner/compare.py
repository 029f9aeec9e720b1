"""Whether a live child differs from its rendered manifest, so that converged children cause no write."""

from __future__ import annotations

from typing import Any

from onload_operator.planner.snapshot import JsonObject
from onload_operator.planner.takeover import stale_selector_keys
from onload_operator.render import names
from onload_operator.render.common import Manifest

MISSING = "missing"
CHANGED = "changed"
DRIFTED = "drifted"


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds everything ``desired`` sets.

    Mappings: every desired key with a contained value. Lists keyed by ``name`` (containers, env, volumes, ...):
    the desired items appear in order, and extra live items, added by other field managers, are tolerated since
    apply would not remove them. Other lists (args, command, tolerations, ...) are atomic: apply replaces them
    whole, so they must hold exactly the desired items. Scalars: equality. Server defaults added to live objects
    are tolerated.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        if not _keyed_by_name(desired):
            return len(live) == len(desired) and all(map(contains, live, desired))
        position = 0
        for item in desired:
            while position < len(live) and not contains(live[position], item):
                position += 1
            if position == len(live):
                return False
            position += 1
        return True
    return bool(live == desired)


def _keyed_by_name(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def apply_reason(desired: Manifest, live: JsonObject | None) -> str | None:
    """Why ``desired`` must be applied over ``live`` (missing, changed or drifted), or None when it need not."""
    if live is None:
        return MISSING
    live_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(names.APPLIED_HASH_ANNOTATION)
    if live_hash != desired["metadata"]["annotations"][names.APPLIED_HASH_ANNOTATION]:
        return CHANGED
    if not contains(live, desired) or stale_selector_keys(desired, live):
        return DRIFTED
    return None
