"""OpenAPI v3 structural schemas of CustomResourceDefinitions: pruning, defaulting and validation.

The order matches the API server: unknown fields are pruned, defaults applied, then the object validated.
CEL rules (``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

JsonObject = dict[str, Any]
Cause = dict[str, str]

_ROOT_KEYS = ("apiVersion", "kind", "metadata")


def _preserves_unknown(schema: JsonObject) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(
    schema: JsonObject, value: Any, *, root: bool = False, path: str = "", removed: list[str] | None = None
) -> Any:
    """Drop fields the schema does not declare, and nulls the schema does not allow (in place).

    The paths of dropped unknown fields are appended to ``removed`` when it is given.
    """
    if isinstance(value, dict):
        properties: JsonObject = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = _preserves_unknown(schema) or additional is True
        embedded = root or schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            if embedded and key in _ROOT_KEYS:
                continue
            child_path = f"{path}.{key}" if path else key
            child = properties.get(key)
            if child is None and isinstance(additional, dict):
                child = additional
            if child is None:
                if not keep_unknown:
                    del value[key]
                    if removed is not None:
                        removed.append(child_path)
                continue
            if value[key] is None and not child.get("nullable"):
                del value[key]
                continue
            prune(child, value[key], path=child_path, removed=removed)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            prune(schema["items"], item, path=f"{path}[{index}]", removed=removed)
    return value


def unknown_fields(schema: JsonObject, obj: JsonObject) -> list[str]:
    """Paths of fields in ``obj`` that the schema does not declare (for ``fieldValidation=Strict``)."""
    removed: list[str] = []
    prune(schema, json.loads(json.dumps(obj)), root=True, removed=removed)
    return removed


def apply_defaults(schema: JsonObject, value: Any) -> Any:
    """Fill in ``default`` values of absent properties, recursing into objects, maps and arrays (in place)."""
    if isinstance(value, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key not in value and "default" in child:
                value[key] = json.loads(json.dumps(child["default"]))
            if key in value:
                apply_defaults(child, value[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            properties = schema.get("properties") or {}
            for key, item in value.items():
                if key not in properties:
                    apply_defaults(additional, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


def _render(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, dict | list) else json.dumps(value)[:60]


def _type_matches(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    return True


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class _Validator:
    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def fail(self, path: str, reason: str, message: str) -> None:
        self.causes.append({"reason": reason, "message": message, "field": path})

    def invalid(self, path: str, value: Any, why: str) -> None:
        self.fail(path, "FieldValueInvalid", f"Invalid value: {_render(value)}: {why}")

    def check_type(self, schema: JsonObject, value: Any, path: str) -> bool:
        if value is None:
            if schema.get("nullable"):
                return False
            self.fail(path, "FieldValueRequired", "Required value")
            return False
        if schema.get("x-kubernetes-int-or-string"):
            if not (isinstance(value, str) or _type_matches("integer", value)):
                self.fail(
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "{_json_type(value)}": {path} in body must be of type integer,string: '
                    f'"{_json_type(value)}"',
                )
                return False
            return True
        expected = schema.get("type")
        if expected and not _type_matches(expected, value):
            self.fail(
                path,
                "FieldValueTypeInvalid",
                f'Invalid value: "{_json_type(value)}": {path} in body must be of type {expected}: '
                f'"{_json_type(value)}"',
            )
            return False
        return True

    def check_scalar(self, schema: JsonObject, value: Any, path: str) -> None:
        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(json.dumps(v) for v in schema["enum"])
            self.fail(
                path, "FieldValueNotSupported", f"Unsupported value: {_render(value)}: supported values: {supported}"
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.check_bounds(schema, value, path)
        if isinstance(value, str):
            if "pattern" in schema and not _compiled(schema["pattern"]).search(value):
                self.invalid(path, value, f"{path} in body should match '{schema['pattern']}'")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self.fail(path, "FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} bytes")
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long")

    def check_bounds(self, schema: JsonObject, value: float, path: str) -> None:
        if "minimum" in schema:
            low = schema["minimum"]
            if value < low or (schema.get("exclusiveMinimum") is True and value == low):
                self.invalid(path, value, f"{path} in body should be greater than or equal to {low}")
        if "maximum" in schema:
            high = schema["maximum"]
            if value > high or (schema.get("exclusiveMaximum") is True and value == high):
                self.invalid(path, value, f"{path} in body should be less than or equal to {high}")

    def check_object(self, schema: JsonObject, value: JsonObject, path: str) -> None:
        properties: JsonObject = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in value:
                self.fail(f"{path}.{key}" if path else key, "FieldValueRequired", "Required value")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key)
            if child is None and isinstance(additional, dict):
                child = additional
            if child is not None and not (path == "" and key in _ROOT_KEYS):
                self.validate(child, item, f"{path}.{key}" if path else key)
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.fail(path, "TooMany", f"Too many: {len(value)}: must have at most {schema['maxProperties']} items")
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            self.invalid(path, len(value), f"{path} in body should have at least {schema['minProperties']} properties")

    def check_array(self, schema: JsonObject, value: list[Any], path: str) -> None:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.fail(
                path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.invalid(path, len(value), f"{path} in body should have at least {schema['minItems']} items")
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                self.validate(items, item, f"{path}[{index}]")

    def check_combinators(self, schema: JsonObject, value: Any, path: str) -> None:
        for branch in schema.get("allOf") or []:
            self.validate(branch, value, path)
        for keyword, exactly_one in (("anyOf", False), ("oneOf", True)):
            branches = schema.get(keyword)
            if not branches:
                continue
            passing = sum(1 for b in branches if not validate(b, value, path))
            if passing == 0 or (exactly_one and passing > 1):
                self.invalid(path, value, f"{path} in body must validate {keyword} schemas")

    def validate(self, schema: JsonObject, value: Any, path: str) -> None:
        if not self.check_type(schema, value, path):
            return
        self.check_scalar(schema, value, path)
        if isinstance(value, dict):
            self.check_object(schema, value, path)
        elif isinstance(value, list):
            self.check_array(schema, value, path)
        self.check_combinators(schema, value, path)


def validate(schema: JsonObject, value: Any, path: str = "") -> list[Cause]:
    """Every violation of ``schema`` by ``value``, as Status causes naming the field (``spec.a.b``)."""
    validator = _Validator()
    validator.validate(schema, value, path)
    return validator.causes
