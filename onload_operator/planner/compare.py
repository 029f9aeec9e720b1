"""Whether a live child differs from its rendered manifest, so that converged children cause no write."""

from __future__ import annotations

import json
from typing import Any

from onload_operator.render import names

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


def apply_reason(desired: dict[str, Any], live: dict[str, Any] | None) -> str | None:
    """Why ``desired`` must be applied over ``live`` (missing, changed or drifted), or None when it need not."""
    if live is None:
        return MISSING
    live_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(names.APPLIED_HASH_ANNOTATION)
    if live_hash != desired["metadata"]["annotations"][names.APPLIED_HASH_ANNOTATION]:
        return CHANGED
    if not contains(live, desired) or stale_selector_keys(desired, live):
        return DRIFTED
    return None


def stale_selector_keys(desired: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Keys of a live Module's node selector that the rendered Module does not set.

    A Module's selector is a granular map, so an apply keeps keys owned by another field manager (a Module
    created by the Go operator selects the CR's ``spec.selector``); such keys would make KMM unload on nodes
    that stop matching them before the device plugin is stopped, so they are removed.
    """
    if desired.get("kind") != "Module":
        return []
    wanted = (desired.get("spec") or {}).get("selector") or {}
    return sorted(set((live.get("spec") or {}).get("selector") or {}) - set(wanted))


def immutable_difference(desired: dict[str, Any], live: dict[str, Any]) -> str | None:
    """What differs in fields the server never lets an update change, so the child must be created again.

    A DaemonSet's ``spec.selector`` is immutable: the Go operator's first release selected its pods by
    ``onload.amd.com/name`` alone, which this operator's apply cannot change.
    """
    if desired.get("kind") != "DaemonSet":
        return None
    wanted = (desired.get("spec") or {}).get("selector")
    current = (live.get("spec") or {}).get("selector")
    if current == wanted:
        return None
    return f"spec.selector is {json.dumps(current, sort_keys=True)}, not {json.dumps(wanted, sort_keys=True)}"
