"""Whether a live child differs from its rendered manifest, so that converged children cause no write."""

from __future__ import annotations

import json
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


def _covered(value: Any, fields: Any) -> bool:
    """Whether every field of a ``managedFields`` FieldsV1 tree exists in ``value``."""
    if not isinstance(fields, dict):
        return True
    for key, below in fields.items():
        if key == ".":
            continue
        kind, _colon, raw = key.partition(":")
        child: Any = None
        if kind == "f" and isinstance(value, dict) and raw in value:
            child = value[raw]
        elif kind == "k" and isinstance(value, list):
            item = json.loads(raw)
            child = next(
                (i for i in value if isinstance(i, dict) and all(i.get(k) == v for k, v in item.items())), None
            )
        elif kind == "v" and isinstance(value, list) and json.loads(raw) in value:
            continue
        elif kind == "i" and isinstance(value, list) and raw.isdigit() and int(raw) < len(value):
            child = value[int(raw)]
        if child is None or not _covered(child, below):
            return False
    return True


def foreign_managers(desired: Manifest, live: JsonObject) -> list[str]:
    """The other field managers that own fields of ``live``'s spec which ``desired`` does not set: server-side apply
    never removes those, so they stay until the spec is replaced. Status writers do not count."""
    managers = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == names.MANAGER or entry.get("subresource"):
            continue
        spec_fields = (entry.get("fieldsV1") or {}).get("f:spec")
        if spec_fields is not None and not _covered(desired.get("spec"), spec_fields):
            managers.append(str(entry.get("manager") or "(unnamed)"))
    return managers
