"""Server-side ``meta.k8s.io/v1 Table`` output, which ``kubectl get`` asks for and prints as it is."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from kubesim.resources import PrinterColumn, ResourceType

JsonObject = dict[str, Any]
CellFunction = Callable[[JsonObject], Any]

_NAME = PrinterColumn("Name", "string", ".metadata.name", "Name must be unique within a namespace.")
_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")
_FILTER = re.compile(r"^\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)$")


def human_duration(seconds: float) -> str:
    """The short relative age kubectl shows (``45s``, ``3m20s``, ``5h``, ``12d``)."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    # Any RFC 3339 form: clients send "+00:00" offsets and fractional seconds as well as "Z".
    parsed = datetime.fromisoformat(timestamp)
    created = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return human_duration(time.time() - created)


def _tokens(expression: str) -> list[str]:
    tokens: list[str] = []
    for match in re.finditer(r"\[([^\]]*)\]|\.?([^.\[]+)", expression):
        tokens.append(match.group(1) if match.group(1) is not None else match.group(2))
    return tokens


def _apply_token(values: list[Any], token: str) -> list[Any]:
    results: list[Any] = []
    for value in values:
        if token == "*":
            results.extend(
                value if isinstance(value, list) else (value or {}).values() if isinstance(value, dict) else []
            )
        elif token.isdigit() and isinstance(value, list):
            if int(token) < len(value):
                results.append(value[int(token)])
        elif _FILTER.match(token) and isinstance(value, list):
            path, wanted = _FILTER.match(token).groups()  # type: ignore[union-attr]
            results.extend(i for i in value if isinstance(i, dict) and str(_dotted(i, path)) == wanted)
        elif isinstance(value, dict) and token in value:
            results.append(value[token])
    return results


def _dotted(obj: JsonObject, path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def jsonpath(obj: JsonObject, expression: str) -> list[Any]:
    """Values selected by the subset of JSONPath used in printer columns: ``.a.b``, ``[0]``, ``[*]``,
    ``[?(@.type=="Ready")]``."""
    values: list[Any] = [obj]
    for token in _tokens(expression.strip().strip("{}")):
        values = _apply_token(values, token)
    return values


def _column_cell(column: PrinterColumn, obj: JsonObject) -> Any:
    values = jsonpath(obj, column.json_path)
    if not values:
        return None
    if column.type == "date":
        return age(values[0] if isinstance(values[0], str) else None)
    if len(values) == 1 and not isinstance(values[0], dict | list):
        return values[0]
    return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)


def _pod_ready(pod: JsonObject) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(pod: JsonObject) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _node_status(node: JsonObject) -> str:
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    text = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    if (node.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_roles(node: JsonObject) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix) :] for k in node["metadata"].get("labels") or {} if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _selector_text(selector: JsonObject | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (selector or {}).items()) or "<none>"


def _status(path: str) -> CellFunction:
    return lambda obj: _dotted(obj, path) or 0


def _event_object(event: JsonObject) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _age_cell(obj: JsonObject) -> str:
    return age(obj["metadata"].get("creationTimestamp"))


_EVENT_COLUMNS: list[tuple[PrinterColumn, CellFunction]] = [
    (
        PrinterColumn("Last Seen", "string", ""),
        lambda e: age(e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")),
    ),
    (PrinterColumn("Type", "string", ""), lambda e: e.get("type", "")),
    (PrinterColumn("Reason", "string", ""), lambda e: e.get("reason", "")),
    (PrinterColumn("Object", "string", ""), _event_object),
    (PrinterColumn("Message", "string", ""), lambda e: e.get("message") or e.get("note") or ""),
]

_BUILTIN_COLUMNS: dict[str, list[tuple[PrinterColumn, CellFunction]]] = {
    "v1/events": _EVENT_COLUMNS,
    "events.k8s.io/v1/events": _EVENT_COLUMNS,
    "v1/configmaps": [
        (PrinterColumn("Data", "integer", ""), lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {})),
        (_AGE, _age_cell),
    ],
    "v1/secrets": [
        (PrinterColumn("Type", "string", ""), lambda c: c.get("type", "")),
        (PrinterColumn("Data", "integer", ""), lambda c: len(c.get("data") or {})),
        (_AGE, _age_cell),
    ],
    "v1/services": [
        (PrinterColumn("Type", "string", ""), lambda s: (s.get("spec") or {}).get("type", "")),
        (PrinterColumn("Cluster-IP", "string", ""), lambda s: (s.get("spec") or {}).get("clusterIP") or "<none>"),
        (
            PrinterColumn("Port(s)", "string", ""),
            lambda s: (
                ",".join(
                    f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in (s.get("spec") or {}).get("ports") or []
                )
                or "<none>"
            ),
        ),
        (_AGE, _age_cell),
    ],
    "apps/v1/deployments": [
        (
            PrinterColumn("Ready", "string", ""),
            lambda d: f"{_dotted(d, 'status.readyReplicas') or 0}/{_dotted(d, 'spec.replicas') or 0}",
        ),
        (PrinterColumn("Up-to-date", "integer", ""), _status("status.updatedReplicas")),
        (PrinterColumn("Available", "integer", ""), _status("status.availableReplicas")),
        (_AGE, _age_cell),
    ],
    "apiextensions.k8s.io/v1/customresourcedefinitions": [
        (PrinterColumn("Created At", "date", ""), lambda c: c["metadata"].get("creationTimestamp", "")),
    ],
    "v1/pods": [
        (PrinterColumn("Ready", "string", ""), _pod_ready),
        (PrinterColumn("Status", "string", ""), _pod_status),
        (
            PrinterColumn("Restarts", "string", ""),
            lambda p: str(
                sum(s.get("restartCount", 0) for s in (p.get("status") or {}).get("containerStatuses") or [])
            ),
        ),
        (_AGE, _age_cell),
        (PrinterColumn("IP", "string", "", priority=1), lambda p: (p.get("status") or {}).get("podIP") or "<none>"),
        (
            PrinterColumn("Node", "string", "", priority=1),
            lambda p: (p.get("spec") or {}).get("nodeName") or "<none>",
        ),
    ],
    "v1/nodes": [
        (PrinterColumn("Status", "string", ""), _node_status),
        (PrinterColumn("Roles", "string", ""), _node_roles),
        (_AGE, _age_cell),
        (
            PrinterColumn("Version", "string", ""),
            lambda n: ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ),
        (
            PrinterColumn("Kernel-Version", "string", "", priority=1),
            lambda n: ((n.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion", ""),
        ),
    ],
    "v1/namespaces": [
        (PrinterColumn("Status", "string", ""), lambda n: (n.get("status") or {}).get("phase", "")),
        (_AGE, _age_cell),
    ],
    "apps/v1/daemonsets": [
        (PrinterColumn("Desired", "integer", ""), _status("status.desiredNumberScheduled")),
        (PrinterColumn("Current", "integer", ""), _status("status.currentNumberScheduled")),
        (PrinterColumn("Ready", "integer", ""), _status("status.numberReady")),
        (PrinterColumn("Up-to-date", "integer", ""), _status("status.updatedNumberScheduled")),
        (PrinterColumn("Available", "integer", ""), _status("status.numberAvailable")),
        (
            PrinterColumn("Node Selector", "string", ""),
            lambda d: _selector_text(
                (((d.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector")
            ),
        ),
        (_AGE, _age_cell),
    ],
    "policy/v1/poddisruptionbudgets": [
        (PrinterColumn("Min Available", "string", ""), lambda p: str((p.get("spec") or {}).get("minAvailable", "N/A"))),
        (
            PrinterColumn("Max Unavailable", "string", ""),
            lambda p: str((p.get("spec") or {}).get("maxUnavailable", "N/A")),
        ),
        (PrinterColumn("Allowed Disruptions", "integer", ""), _status("status.disruptionsAllowed")),
        (_AGE, _age_cell),
    ],
}


def _columns(resource_type: ResourceType) -> list[tuple[PrinterColumn, CellFunction]]:
    builtin = _BUILTIN_COLUMNS.get(resource_type.key)
    if builtin is not None:
        return builtin
    if resource_type.printer_columns:
        return [(c, lambda obj, c=c: _column_cell(c, obj)) for c in resource_type.printer_columns]  # type: ignore[misc]
    return [(_AGE, _age_cell)]


def _row_object(obj: JsonObject, include: str) -> JsonObject | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(
    resource_type: ResourceType,
    objects: Iterable[JsonObject],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    list_meta: JsonObject | None = None,
) -> JsonObject:
    columns = _columns(resource_type)
    definitions = [
        {
            "name": column.name,
            "type": column.type,
            "format": "name" if column is _NAME else column.format,
            "description": column.description,
            # Events list their (generated) names only in wide output, as upstream does.
            "priority": 1 if column is _NAME and resource_type.kind == "Event" else column.priority,
        }
        for column, _ in [(_NAME, None), *columns]
    ]
    rows = []
    for obj in objects:
        row: JsonObject = {"cells": [obj["metadata"]["name"], *(cell(obj) for _, cell in columns)]}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    metadata: JsonObject = {"resourceVersion": resource_version, **(list_meta or {})}
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
