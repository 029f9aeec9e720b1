"""Build the ``Onload`` CustomResourceDefinition from the pydantic models.

pydantic's JSON Schema is close to a Kubernetes structural schema; this module inlines ``$defs``, drops what
Kubernetes refuses or does not need (titles, ``additionalProperties: false``, ``default: null``, ``anyOf`` with
null for optional fields) and keeps descriptions, defaults, enums, bounds, patterns and ``x-kubernetes-*``
extensions.
"""

from __future__ import annotations

from typing import Any

from onload_operator.api import v1alpha1
from onload_operator.api.base import ApiModel

Schema = dict[str, Any]

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Version",
        "type": "string",
        "jsonPath": ".status.version",
        "description": "Onload version that the selected nodes run (several while a rollout is under way).",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether Onload runs on every selected node.",
    },
    {
        "name": "Nodes",
        "type": "integer",
        "jsonPath": ".status.nodes.selected",
        "description": "Nodes selected by spec.selector.",
    },
    {
        "name": "Module-Ready",
        "type": "integer",
        "jsonPath": ".status.nodes.moduleReady",
        "description": "Selected nodes with the Onload kernel module loaded.",
    },
    {
        "name": "Plugin-Ready",
        "type": "integer",
        "jsonPath": ".status.nodes.devicePluginReady",
        "description": "Selected nodes with a ready device plugin.",
    },
    {
        "name": "Upgraded",
        "type": "string",
        "jsonPath": ".status.upgrade.progress",
        "description": "Nodes that run the version being rolled out, out of the selected nodes (done/total).",
    },
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Reason of the Ready condition.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_DROPPED_KEYS = {"title", "additionalProperties"}


def _structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Rewrite one pydantic JSON Schema node into a structural schema node."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
        return _structural(merged, defs)
    any_of = node.get("anyOf")
    if any_of is not None and node.get("x-kubernetes-int-or-string"):
        return _structural({key: value for key, value in node.items() if key != "anyOf"}, defs)
    if any_of is not None:
        non_null = [option for option in any_of if option.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {any_of}")
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        return _structural({**non_null[0], **rest}, defs)

    result: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "default" and value is None):
            continue
        if key == "properties":
            result[key] = {name: _structural(child, defs) for name, child in value.items()}
        elif key == "items":
            result[key] = _structural(value, defs)
        else:
            result[key] = value
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        result["additionalProperties"] = _structural(additional, defs)
    if result.get("type") == "object" and "properties" not in result and "additionalProperties" not in result:
        result.setdefault("x-kubernetes-preserve-unknown-fields", True)
    return result


def model_schema(model: type[ApiModel]) -> Schema:
    """The structural OpenAPI v3 schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def onload_crd() -> dict[str, Any]:
    """The complete ``apiextensions.k8s.io/v1`` CustomResourceDefinition for ``Onload``."""
    spec_schema = model_schema(v1alpha1.OnloadSpec)
    status_schema = model_schema(v1alpha1.OnloadStatus)
    open_api: Schema = {
        "type": "object",
        "description": "Onload puts the Onload kernel-bypass stack on the selected nodes and hands it to pods "
        "through the `amd.com/onload` resource.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "onload"},
        },
        "spec": {
            "group": v1alpha1.GROUP,
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.SINGULAR,
                "shortNames": ["onl"],
                "categories": ["onload"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": open_api},
                }
            ],
        },
    }
