"""Server-side apply, approximated.

Each apply manager's owned fields are kept in ``metadata.managedFields`` in the real ``FieldsV1`` format
(``f:`` fields, ``k:`` list items by merge key, ``v:`` set values). An apply merges the applied configuration
into the object, removes fields the manager applied before but no longer applies (unless another manager owns
them), and reports a 409 conflict when it would change a field another apply manager owns, unless forced.

Ordinary creates, updates and patches made over HTTP record an ``Update`` entry for their manager (the
``fieldManager`` parameter, or the client's user agent up to its first ``/``), which takes over the fields the write
changed; an apply conflicts with any other manager owning a field it would change.

Lists of custom resources follow their schema, as the real server's structured merge does:
``x-kubernetes-list-type: map`` items are keyed by ``x-kubernetes-list-map-keys``, ``set`` lists hold values, and
other lists are atomic. Approximations: list items of built-in kinds (and the metadata of every object) are keyed
by the patch merge keys of :mod:`kubesim.patch`; writes by the simulated controllers (through the store, not HTTP)
record no ownership.
"""

from __future__ import annotations

import json
from typing import Any

from kubesim.errors import ApiError
from kubesim.patch import MERGE_KEYS, SET_LISTS, copy_object, json_copy
from kubesim.validation import OBJECT_META_FIELDS

JsonObject = dict[str, Any]
Path = tuple[str, ...]

_UNOWNED_METADATA = OBJECT_META_FIELDS - {"generateName", "labels", "annotations", "ownerReferences", "finalizers"}
"""Metadata the server sets, which no manager owns."""


def _key_element(fields: dict[str, Any]) -> str:
    return "k:" + json.dumps(dict(sorted(fields.items())), separators=(",", ":"))


class ListTypes:
    """How apply tells list items apart: by key fields (``k:``), by value in a set (``v:``), or not at all (an
    atomic list). This base is the built-in kinds' table: the patch merge keys of :mod:`kubesim.patch`, by the name
    of the list's field. ``path`` is the FieldsV1 path of the list."""

    def item_key(self, path: Path, item: Any) -> str | None:
        if not isinstance(item, dict) or not path:
            return None
        field = path[-1][2:]
        key = MERGE_KEYS.get(field)
        if field == "ports":
            key = "containerPort" if "containerPort" in item else "port"
        if key is None or key not in item:
            return None
        return _key_element({key: item[key]})

    def is_set(self, path: Path) -> bool:
        return bool(path) and path[-1][2:] in SET_LISTS

    def is_keyed(self, path: Path) -> bool:
        """Whether items of the list at ``path`` merge by key (an empty applied list then removes nothing)."""
        return bool(path) and (path[-1][2:] in MERGE_KEYS or path[-1] == "f:ports")


BUILTIN_LISTS = ListTypes()


class SchemaListTypes(ListTypes):
    """Lists of a custom resource, typed by its structural schema (metadata as in every object)."""

    def __init__(self, schema: JsonObject) -> None:
        self._schema = schema

    def _list_schema(self, path: Path) -> JsonObject:
        node: Any = self._schema
        for element in path:
            if not isinstance(node, dict):
                return {}
            if element.startswith("f:"):
                additional = node.get("additionalProperties")
                fallback = additional if isinstance(additional, dict) else {}
                node = (node.get("properties") or {}).get(element[2:], fallback)
            else:
                node = node.get("items") or {}
        return node if isinstance(node, dict) else {}

    def item_key(self, path: Path, item: Any) -> str | None:
        if path[:1] == ("f:metadata",):
            return super().item_key(path, item)
        schema = self._list_schema(path)
        keys = schema.get("x-kubernetes-list-map-keys") or []
        if schema.get("x-kubernetes-list-type") != "map" or not isinstance(item, dict) or not keys:
            return None
        if any(key not in item for key in keys):
            return None
        return _key_element({key: item[key] for key in keys})

    def is_set(self, path: Path) -> bool:
        if path[:1] == ("f:metadata",):
            return super().is_set(path)
        return self._list_schema(path).get("x-kubernetes-list-type") == "set"

    def is_keyed(self, path: Path) -> bool:
        if path[:1] == ("f:metadata",):
            return super().is_keyed(path)
        return self._list_schema(path).get("x-kubernetes-list-type") == "map"


def _list_leaves(items: list[Any], prefix: Path, lists: ListTypes, out: set[Path]) -> bool:
    """Add leaves of a keyed or set list; False when the list is atomic."""
    if lists.is_set(prefix) and all(not isinstance(i, dict | list) for i in items):
        for item in items:
            out.add((*prefix, "v:" + json.dumps(item)))
        return True
    keys = [lists.item_key(prefix, item) for item in items]
    if not items or any(k is None for k in keys):
        return False
    for key, item in zip(keys, items, strict=True):
        assert key is not None
        item_path = (*prefix, key)
        out.add((*item_path, "."))
        _leaves(item, item_path, lists, out)
    return True


def _leaves(value: JsonObject, prefix: Path, lists: ListTypes, out: set[Path]) -> None:
    for name, child in value.items():
        if not prefix and name in ("apiVersion", "kind"):
            continue
        if prefix == ("f:metadata",) and name in _UNOWNED_METADATA:
            continue
        path = (*prefix, f"f:{name}")
        if isinstance(child, dict) and child:
            _leaves(child, path, lists, out)
        elif isinstance(child, list) and _list_leaves(child, path, lists, out):
            continue
        else:
            out.add(path)


def field_paths(applied: JsonObject, lists: ListTypes) -> set[Path]:
    out: set[Path] = set()
    _leaves(applied, (), lists, out)
    return out


def to_fields_v1(paths: set[Path]) -> JsonObject:
    tree: JsonObject = {}
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    return tree


def from_fields_v1(tree: JsonObject, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for element, child in tree.items():
        path = (*prefix, element)
        if child:
            out |= from_fields_v1(child, path)
        else:
            out.add(path)
    return out


_MISSING = object()


def _step(node: Any, element: str) -> Any:
    if element == ".":
        return node
    kind, _, text = element.partition(":")
    if kind == "f":
        return node.get(text, _MISSING) if isinstance(node, dict) else _MISSING
    if not isinstance(node, list):
        return _MISSING
    if kind == "v":
        wanted = json.loads(text)
        return wanted if wanted in node else _MISSING
    key = json.loads(text)
    return next(
        (i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in key.items())),
        _MISSING,
    )


def value_at(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        node = _step(node, element)
        if node is _MISSING:
            return _MISSING
    return node


def _remove_path(obj: JsonObject, path: Path) -> None:
    if path[-1] == ".":
        path = path[:-1]
    parent = value_at(obj, path[:-1])
    if parent is _MISSING:
        return
    kind, _, text = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(text, None)
    elif isinstance(parent, list):
        target = _step(parent, path[-1])
        if target is not _MISSING:
            parent.remove(target)


def _merge(old: Any, applied: Any, path: Path, lists: ListTypes) -> Any:
    if isinstance(applied, dict) and isinstance(old, dict):
        merged = dict(old)
        for name, value in applied.items():
            merged[name] = _merge(old.get(name), value, (*path, f"f:{name}"), lists)
        return merged
    if isinstance(applied, list) and isinstance(old, list):
        if lists.is_set(path):
            return old + [v for v in applied if v not in old]
        keys = [lists.item_key(path, item) for item in applied]
        if all(keys) and (applied or lists.is_keyed(path)):
            merged_list = list(old)
            for key, item in zip(keys, applied, strict=True):
                assert key is not None
                existing = _step(merged_list, key)
                if existing is _MISSING:
                    merged_list.append(json_copy(item))
                else:
                    merged_list[merged_list.index(existing)] = _merge(existing, item, (*path, key), lists)
            return merged_list
    return json_copy(applied)


def _entries(obj: JsonObject) -> list[JsonObject]:
    return [dict(e) for e in obj.get("metadata", {}).get("managedFields") or []]


def _entry(
    manager: str,
    api_version: str,
    paths: set[Path],
    time: str,
    subresource: str | None,
    operation: str = "Apply",
) -> JsonObject:
    entry: JsonObject = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def record_update(
    old: JsonObject | None,
    new: JsonObject,
    manager: str,
    *,
    time: str,
    subresource: str | None,
    lists: ListTypes = BUILTIN_LISTS,
) -> list[JsonObject]:
    """managedFields after an ordinary write of ``new`` over ``old``: ``manager`` takes over what it changed."""
    new_paths = field_paths(new, lists)
    if old is None:
        changed = new_paths
    else:
        candidates = new_paths | field_paths(old, lists)
        changed = {p for p in candidates if p[-1] != "." and value_at(old, p) != value_at(new, p)}
        changed |= {
            p for p in candidates if p[-1] == "." and (value_at(old, p) is _MISSING) != (value_at(new, p) is _MISSING)
        }
    entries = _entries(old) if old is not None else []
    if not changed:
        return entries
    kept: list[JsonObject] = []
    mine: set[Path] = set()
    for entry in entries:
        owned = from_fields_v1(entry.get("fieldsV1") or {})
        if (entry.get("manager"), entry.get("operation"), entry.get("subresource")) == (manager, "Update", subresource):
            mine = owned
            continue
        remaining = owned - changed
        if remaining != owned:
            entry["fieldsV1"] = to_fields_v1(remaining)
        if remaining:
            kept.append(entry)
    mine = (mine | changed) & new_paths
    if mine:
        kept.append(_entry(manager, str(new.get("apiVersion", "")), mine, time, subresource, "Update"))
    return kept


def apply_to_new(applied: JsonObject, manager: str, time: str, lists: ListTypes = BUILTIN_LISTS) -> JsonObject:
    """The object an apply creates, owning every field it sets."""
    created = copy_object(applied)
    paths = field_paths(applied, lists)
    created["metadata"]["managedFields"] = [_entry(manager, applied.get("apiVersion", ""), paths, time, None)]
    return created


def server_side_apply(
    old: JsonObject,
    applied: JsonObject,
    manager: str,
    *,
    force: bool,
    time: str,
    subresource: str | None,
    lists: ListTypes = BUILTIN_LISTS,
) -> JsonObject:
    """Merge ``applied`` into ``old`` for ``manager`` and return the new object with updated managedFields."""
    new_paths = field_paths(applied, lists)
    entries = _entries(old)
    conflicts: list[tuple[str, Path]] = []
    previous: set[Path] = set()
    previous_time = time
    others: list[tuple[JsonObject, set[Path]]] = []
    for entry in entries:
        owned = from_fields_v1(entry.get("fieldsV1") or {})
        if (entry.get("manager"), entry.get("operation"), entry.get("subresource")) == (manager, "Apply", subresource):
            previous, previous_time = owned, entry.get("time", time)
            continue
        others.append((entry, owned))
        if entry.get("manager") == manager:
            continue  # a manager does not conflict with its own updates
        for path in sorted(owned & new_paths):
            if path[-1] != "." and value_at(old, path) != value_at(applied, path):
                conflicts.append((entry["manager"], path))
    if conflicts and not force:
        _raise_conflicts(old, conflicts)
    old = copy_object(old)  # fields are removed in place below; the stored object must stay intact
    merged: JsonObject = _merge(old, {k: v for k, v in applied.items() if k != "metadata"}, (), lists)
    merged["metadata"] = _merge(
        old["metadata"],
        {k: v for k, v in applied["metadata"].items() if k not in _UNOWNED_METADATA},
        ("f:metadata",),
        lists,
    )
    still_owned: set[Path] = set()
    kept_entries = []
    for entry, owned in others:
        if force:
            owned -= {path for _, path in conflicts}
            entry["fieldsV1"] = to_fields_v1(owned)
        still_owned |= owned
        if owned:
            kept_entries.append(entry)
    released = previous - new_paths - still_owned
    # Whole list items first (their fields, including the key, go with them), then fields, deepest first.
    items = sorted((p for p in released if p[-1] == "."), key=len)
    fields = sorted((p for p in released if p[-1] != "."), key=len, reverse=True)
    for path in items + fields:
        _remove_path(merged, path)
    # An apply that owns the same fields as before keeps its timestamp, so that a no-op apply changes nothing.
    entry_time = previous_time if previous == new_paths else time
    kept_entries.append(
        _entry(manager, str(applied.get("apiVersion", old.get("apiVersion", ""))), new_paths, entry_time, subresource)
    )
    merged["metadata"]["managedFields"] = kept_entries
    return merged


def _render_path(path: Path) -> str:
    return "".join("." + e[2:] if e.startswith("f:") else f"[{e[2:]}]" for e in path if e != ".")


def _raise_conflicts(old: JsonObject, conflicts: list[tuple[str, Path]]) -> None:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{manager}": {_render_path(path)}',
            "field": _render_path(path),
        }
        for manager, path in conflicts
    ]
    summary = "\n".join(f"- {c['message']}" for c in causes)
    kind = old.get("kind", "")
    name = old["metadata"]["name"]
    raise ApiError(
        409,
        "Conflict",
        f"Apply failed with {len(causes)} conflict{'s' if len(causes) > 1 else ''}: {summary}",
        {"name": name, "kind": kind, "causes": causes},
    )
