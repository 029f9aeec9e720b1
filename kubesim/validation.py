"""Admission checks of a write, in the order the API server runs them for custom resources: unknown fields are
pruned (and reported as the ``fieldValidation`` directive asks), defaults applied, the structural schema checked,
then the CEL rules, unless the schema found an error that makes them unsafe to run (apiextensions' custom resource
strategy: a required, mistyped, unsupported, too long or too large value)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubesim import cel, schema
from kubesim.errors import bad_request

JsonObject = dict[str, Any]
Cause = dict[str, str]

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
"""The fields of ``metadata`` (ObjectMeta); the API server drops any other when it decodes an object."""

BLOCKING_REASONS = frozenset(
    {"FieldValueRequired", "FieldValueTypeInvalid", "FieldValueNotSupported", "FieldValueTooLong", "FieldValueTooMany"}
)
CEL_SKIPPED: Cause = {
    "reason": "FieldValueInvalid",
    "message": "Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation",
    "field": "<nil>",
}

IGNORE, WARN, STRICT = "Ignore", "Warn", "Strict"


@dataclass
class FieldValidation:
    """The ``fieldValidation`` directive of one request (``Warn`` when not given) and the warnings it collected."""

    directive: str = WARN
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, value: str | None) -> FieldValidation:
        if value not in (None, "", IGNORE, WARN, STRICT):
            raise bad_request(f'fieldValidation must be one of "Ignore", "Warn" or "Strict", not "{value}"')
        return cls(value or WARN)

    def report(self, kind: str, version: str, unknown: list[str]) -> None:
        """Refuse (Strict) or warn about (Warn) the unknown fields of a decoded object."""
        if not unknown or self.directive == IGNORE:
            return
        if self.directive == STRICT:
            raise bad_request(
                f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: '
                + ", ".join(f'unknown field "{path}"' for path in unknown)
            )
        self.warnings.extend(f'unknown field "{path}"' for path in unknown)


def prune_metadata(obj: JsonObject) -> list[str]:
    """Drop the fields of ``metadata`` that ObjectMeta does not have; returns their paths."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return []
    unknown = [key for key in meta if key not in OBJECT_META_FIELDS]
    for key in unknown:
        del meta[key]
    return [f"metadata.{key}" for key in unknown]


def _has_rules(structural: JsonObject) -> bool:
    if structural.get("x-kubernetes-validations"):
        return True
    children = [*(structural.get("properties") or {}).values()]
    for nested in ("items", "additionalProperties"):
        if isinstance(structural.get(nested), dict):
            children.append(structural[nested])
    return any(_has_rules(child) for child in children)


def custom_resource_causes(structural: JsonObject, obj: JsonObject, old: JsonObject | None) -> list[Cause]:
    """Schema and CEL violations of a pruned and defaulted custom resource."""
    causes = schema.validate(structural, obj)
    if not _has_rules(structural):
        return causes
    if any(cause["reason"] in BLOCKING_REASONS for cause in causes):
        return [*causes, CEL_SKIPPED]
    return causes + [
        {"reason": "FieldValueInvalid", "field": path, "message": f"Invalid value: {message}"}
        for path, message in cel.rule_violations(structural, obj, old)
    ]


def prune_custom_resource(structural: JsonObject, obj: JsonObject) -> list[str]:
    """Drop unknown fields (metadata's first, as the decoder meets them); returns their paths in that order."""
    removed_meta = prune_metadata(obj)
    removed: list[str] = []
    schema.prune(structural, obj, root=True, removed=removed)
    return removed_meta + sorted(removed)
