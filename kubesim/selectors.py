"""Label and field selectors in Kubernetes syntax, parsed once and matched against plain-dict objects."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from kubesim.errors import bad_request
from kubesim.syntax import label_key_problem

JsonObject = dict[str, Any]
LabelPredicate = Callable[[Mapping[str, str]], bool]
ObjectPredicate = Callable[[JsonObject], bool]

_SET_REQUIREMENT = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQUALITY_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``in (...)`` value lists."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _check_key(key: str) -> None:
    problem = label_key_problem(key)
    if problem:
        raise bad_request(f"unable to parse requirement: invalid label key {key!r}: {problem}")


def _requirement(term: str) -> LabelPredicate:
    equality = _EQUALITY_REQUIREMENT.match(term)
    if equality:
        key, op, value = equality.groups()
        _check_key(key)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    match = _SET_REQUIREMENT.match(term)
    if not match:
        raise bad_request(f"unable to parse requirement: {term.strip()!r}")
    negated, key, op, values_text = match.groups()
    _check_key(key)
    if op is None:
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    if negated:
        raise bad_request(f"unable to parse requirement: {term.strip()!r}")
    values = frozenset(v.strip() for v in values_text.split(",") if v.strip())
    if op == "in":
        return lambda labels: labels.get(key) in values
    return lambda labels: labels.get(key) not in values


def parse_label_selector(text: str | None) -> LabelPredicate | None:
    """A predicate over labels, or None for an empty selector (matches everything)."""
    if not text or not text.strip():
        return None
    requirements = [_requirement(term) for term in _split_top_level(text)]
    if len(requirements) == 1:
        return requirements[0]
    return lambda labels: all(r(labels) for r in requirements)


def label_selector_matcher(selector: JsonObject | None) -> LabelPredicate:
    """A predicate for a ``metav1.LabelSelector`` object; an empty selector matches all, None matches none."""
    if selector is None:
        return lambda labels: False
    match_labels = dict(selector.get("matchLabels") or {})
    expressions = [
        (e["key"], e["operator"], frozenset(e.get("values") or ())) for e in selector.get("matchExpressions") or []
    ]

    def matches(labels: Mapping[str, str]) -> bool:
        for key, value in match_labels.items():
            if labels.get(key) != value:
                return False
        for key, operator, values in expressions:
            if operator == "In" and labels.get(key) not in values:
                return False
            if operator == "NotIn" and key in labels and labels[key] in values:
                return False
            if operator == "Exists" and key not in labels:
                return False
            if operator == "DoesNotExist" and key in labels:
                return False
        return True

    return matches


def field_value(obj: JsonObject, path: str) -> str:
    """The string form of a dotted path's value, as field selectors compare it ("" when absent)."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
        if value is None:
            return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return ""
    return str(value)


def _field_terms(text: str) -> list[tuple[str, bool, str]]:
    terms: list[tuple[str, bool, str]] = []
    for term in text.split(","):
        if not term.strip():
            continue
        for operator, equal in (("!=", False), ("==", True), ("=", True)):
            if operator in term:
                path, value = term.split(operator, 1)
                terms.append((path.strip(), equal, value.strip()))
                break
        else:
            raise bad_request(f"invalid selector: {text!r}; can't understand {term!r}")
    return terms


def field_selector_labels(text: str | None) -> list[str]:
    """The field paths a field selector names."""
    return [path for path, _, _ in _field_terms(text)] if text and text.strip() else []


def parse_field_selector(text: str | None) -> ObjectPredicate | None:
    """A predicate over objects for ``path=value,path!=value``; None for an empty selector."""
    if not text or not text.strip():
        return None
    terms = _field_terms(text)

    def matches(obj: JsonObject) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in terms)

    return matches


def object_matcher(label_selector: str | None, field_selector: str | None) -> ObjectPredicate | None:
    """Combine both selectors into one object predicate; None when neither restricts anything."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    if labels is None and fields is None:
        return None
    if fields is None:
        assert labels is not None
        label_match = labels
        return lambda obj: label_match(obj.get("metadata", {}).get("labels") or {})
    if labels is None:
        return fields
    field_match, label_only = fields, labels
    return lambda obj: label_only(obj.get("metadata", {}).get("labels") or {}) and field_match(obj)
