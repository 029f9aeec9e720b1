"""Evaluate the CEL rules (``x-kubernetes-validations``) of a CRD's structural schema, as the API server does.

Transition rules (those that read ``oldSelf``) are evaluated only on updates, when the stored value is given.
"""

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celtypes import BoolType
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]


@lru_cache(maxsize=512)
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _rule_holds(rule: str, value: Any, old_value: Any) -> bool:
    activation = {"self": json_to_cel(value)}
    if old_value is not None:
        activation["oldSelf"] = json_to_cel(old_value)
    try:
        result = _program(rule).evaluate(activation)
    except CELEvalError:
        return False
    return isinstance(result, BoolType) and bool(result)


def rule_violations(schema: Schema, value: Any, old_value: Any = None, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(field path, message)`` for every rule in ``schema`` that ``value`` breaks."""
    if value is None:
        return
    for validation in schema.get("x-kubernetes-validations", ()):
        rule = validation["rule"]
        if "oldSelf" in rule and old_value is None:
            continue
        if not _rule_holds(rule, value, old_value):
            yield path or "<root>", validation.get("message") or f"failed rule: {rule}"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        old_map = old_value if isinstance(old_value, dict) else {}
        for key, child in value.items():
            child_schema = properties.get(key, additional if isinstance(additional, dict) else None)
            if child_schema is not None:
                child_path = f"{path}.{key}" if path else key
                yield from rule_violations(child_schema, child, old_map.get(key), child_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from rule_violations(schema["items"], item, None, f"{path}[{index}]")
