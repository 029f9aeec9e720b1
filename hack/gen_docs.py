"""Write docs/configuration.md, the reference of every field of the Onload CRD (``make manifests``).

It walks the same schema as the CRD (``onload_operator.api.crd``, built from the pydantic models), so a field added
to the models appears here on the next ``make manifests``, and ``make verify`` fails while this file is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onload_operator.api import v1alpha1
from onload_operator.api.crd import model_schema

Schema = dict[str, Any]
TARGET = Path("docs/configuration.md")

INTRO = f"""# Configuration reference: the `{v1alpha1.KIND}` custom resource

<!-- Generated from onload_operator/api/v1alpha1.py by `make manifests` (hack/gen_docs.py). Do not edit. -->

`apiVersion: {v1alpha1.API_VERSION}`, `kind: {v1alpha1.KIND}`, namespaced (short name `onl`). The operator
reads `spec` and writes `status`. `kubectl explain onload.spec` shows the same descriptions in a cluster.

Types are those of the CRD's OpenAPI schema; `[]T` is a list, `map[string]T` an object with free keys. A field
is *required* when the CR is refused without it; otherwise the default applies when it is left out. Constraints
are checked by the API server when the CR is applied; the rules marked *CEL* are the CRD's validation rules.
"""


def type_name(node: Schema) -> str:
    kind = node.get("type", "")
    if kind == "array":
        return "[]" + type_name(node.get("items", {}))
    if kind == "object" and "properties" not in node:
        additional = node.get("additionalProperties")
        return f"map[string]{type_name(additional)}" if isinstance(additional, dict) else "object"
    if "enum" in node:
        return " | ".join(f"`{value}`" for value in node["enum"])
    return str(kind) or "any"


def constraints(node: Schema) -> list[str]:
    found = []
    for key, text in (
        ("minLength", "length ≥ {}"),
        ("maxLength", "length ≤ {}"),
        ("minimum", "≥ {}"),
        ("maximum", "≤ {}"),
        ("minItems", "at least {} item(s)"),
        ("maxItems", "at most {} item(s)"),
        ("minProperties", "at least {} key(s)"),
    ):
        if key in node:
            found.append(text.format(node[key]))
    if "pattern" in node:
        found.append(f"pattern `{node['pattern']}`")
    found += [f"CEL: `{rule['rule']}` ({rule.get('message', '')})" for rule in node.get("x-kubernetes-validations", [])]
    return found


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def rows(node: Schema, path: str, required: bool) -> Iterator[tuple[str, str, str, str]]:
    """(path, type, default or "required", description with constraints) for a field and every field below it."""
    default = "required" if required else (f"`{json.dumps(node['default'])}`" if "default" in node else "")
    description = node.get("description", "")
    extra = constraints(node)
    if extra:
        description = f"{description} *{'; '.join(extra)}.*" if description else f"*{'; '.join(extra)}.*"
    yield path, type_name(node), default, description
    child = node
    child_path = path
    while child.get("type") == "array":
        child = child.get("items", {})
        child_path += "[]"
    for name, field in child.get("properties", {}).items():
        yield from rows(field, f"{child_path}.{name}", name in child.get("required", []))


def table(root: Schema, root_path: str) -> str:
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in root.get("properties", {}).items():
        for path, kind, default, description in rows(field, f"{root_path}.{name}", name in root.get("required", [])):
            lines.append(f"| `{path}` | {cell(kind)} | {cell(default)} | {cell(description)} |")
    return "\n".join(lines)


def render() -> str:
    spec, status = model_schema(v1alpha1.OnloadSpec), model_schema(v1alpha1.OnloadStatus)
    sections = [
        INTRO,
        "## spec\n",
        f"{spec.get('description', '')}\n".lstrip("\n"),
        table(spec, "spec") + "\n",
        "## status\n",
        "Written by the operator; read it with `kubectl get onload -o yaml` or `kubectl describe onload`. The "
        "condition reasons are explained in [troubleshooting.md](troubleshooting.md).\n",
        table(status, "status") + "\n",
    ]
    return "\n".join(section for section in sections if section.strip())


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())


if __name__ == "__main__":
    main()
