"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch for built-in kinds.

All functions return a new document and leave their inputs untouched.
"""

from __future__ import annotations

from typing import Any, cast

from kubesim.errors import ApiError

JsonObject = dict[str, Any]

# Patch merge keys of built-in kinds, by list field name (taken from the Go struct tags upstream).
# Lists not named here (tolerations, taints, args, command, envFrom, ...) are replaced as a whole, as upstream does.
PATCH_MERGE = "application/merge-patch+json"
PATCH_JSON = "application/json-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (PATCH_MERGE, PATCH_JSON, PATCH_STRATEGIC, PATCH_APPLY)
"""The content types of a PATCH request, one per kind of patch."""

MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "addresses": "type",
    "resourceClaims": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
# Lists of scalars merged as sets rather than replaced.
SET_LISTS = frozenset({"finalizers"})


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON document, several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


def copy_object(obj: JsonObject) -> JsonObject:
    return cast(JsonObject, json_copy(obj))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 -------------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    try:
        index = int(token)
    except ValueError:
        raise ApiError(422, "Invalid", f"invalid array index {token!r}") from None
    limit = len(container) if for_add else len(container) - 1
    if index < 0 or index > limit:
        raise ApiError(422, "Invalid", f"array index {index} out of bounds")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens:
        if isinstance(current, dict):
            if token not in current:
                raise ApiError(422, "Invalid", f"path element {token!r} not found")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise ApiError(422, "Invalid", f"cannot descend into a scalar at {token!r}")
    return current


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise ApiError(422, "Invalid", "cannot add to a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise ApiError(422, "Invalid", "cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ApiError(422, "Invalid", f"unable to remove nonexistent key: {last}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_add=False))
    raise ApiError(422, "Invalid", "cannot remove from a scalar")


def json_patch(target: Any, operations: Any) -> Any:
    """Apply RFC 6902 operations (add, remove, replace, move, copy, test) to a copy of ``target``."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = json_copy(target)
    for operation in operations:
        op = operation.get("op")
        tokens = _pointer(operation.get("path", ""))
        if op == "add":
            doc = _add(doc, tokens, json_copy(operation.get("value")))
        elif op == "remove":
            _remove(doc, tokens)
        elif op == "replace":
            _resolve(doc, tokens)
            if tokens:
                _remove(doc, tokens)
            doc = _add(doc, tokens, json_copy(operation.get("value")))
        elif op == "move":
            source = _pointer(operation.get("from", ""))
            doc = _add(doc, tokens, _remove(doc, source))
        elif op == "copy":
            source = _pointer(operation.get("from", ""))
            doc = _add(doc, tokens, json_copy(_resolve(doc, source)))
        elif op == "test":
            if _resolve(doc, tokens) != operation.get("value"):
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: testing value "
                    f"{operation.get('path')} failed",
                )
        else:
            raise ApiError(422, "Invalid", f"unknown JSON patch operation {op!r}")
    return doc


# --- strategic merge patch --------------------------------------------------------------------------------


def _merge_key_for(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


def _strategic_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [json_copy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    current = list(original) if isinstance(original, list) else []
    if field in SET_LISTS:
        return current + [json_copy(v) for v in patch if v not in current]
    key = _merge_key_for(field, patch + current)
    if key is None:
        return [strategic_merge_patch(None, i) if isinstance(i, dict) else i for i in patch]
    for item in patch:
        if not isinstance(item, dict):
            continue
        position = next((n for n, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if position is not None:
                current.pop(position)
        elif position is None:
            current.append(strategic_merge_patch(None, item))
        else:
            current[position] = strategic_merge_patch(current[position], item)
    return current


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    """Kubernetes strategic merge patch: merge-keyed lists merge by key; ``$patch``, ``$retainKeys``,
    ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>`` directives are honoured."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    base: JsonObject = {} if directive == "replace" or not isinstance(original, dict) else dict(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            base[field] = [v for v in base.get(field) or [] if v not in value]
        elif value is None:
            base.pop(key, None)
        elif isinstance(value, list):
            base[key] = _strategic_list(key, base.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(base.get(key), value)
            if merged is None:
                base.pop(key, None)
            else:
                base[key] = merged
        else:
            base[key] = value
    if isinstance(retain, list):
        base = {k: v for k, v in base.items() if k in retain}
    return base
