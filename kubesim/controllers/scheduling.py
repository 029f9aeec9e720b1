"""Node eligibility as the scheduler and the DaemonSet controller decide it (node selectors, required node
affinity, taints against tolerations)."""

from collections.abc import Sequence
from typing import Any

JsonObject = dict[str, Any]

NOT_READY_TAINT = "node.kubernetes.io/not-ready"

DAEMON_POD_TOLERATIONS: tuple[JsonObject, ...] = (
    {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
"""Tolerations the DaemonSet controller adds to every daemon pod."""

HOST_NETWORK_TOLERATION: JsonObject = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}


def node_labels(node: JsonObject) -> dict[str, str]:
    labels: dict[str, str] = node["metadata"].get("labels") or {}
    return labels


def matches_labels(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """Equality-only map selector (nodeSelector, KMM Module selector); empty matches everything."""
    return all(labels.get(key) == value for key, value in (selector or {}).items())


def matches_required_node_affinity(affinity: JsonObject | None, node: JsonObject) -> bool:
    """``requiredDuringSchedulingIgnoredDuringExecution``: terms are ORed; an empty term list matches nothing."""
    required = ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def _term_matches(term: JsonObject, node: JsonObject) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = node_labels(node)
    node_fields = {"metadata.name": node["metadata"]["name"]}
    return all(requirement_matches(expr, labels) for expr in expressions) and all(
        requirement_matches(expr, node_fields) for expr in fields
    )


def requirement_matches(requirement: JsonObject, values: dict[str, str]) -> bool:
    """One node selector requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against labels or fields."""
    key = requirement.get("key", "")
    operator = requirement.get("operator")
    wanted: list[str] = requirement.get("values") or []
    present = key in values
    value = values.get(key)
    if operator == "In":
        return present and value in wanted
    if operator == "NotIn":
        return not present or value not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            actual, bound = int(value or ""), int(wanted[0])
        except ValueError:
            return False
        return actual > bound if operator == "Gt" else actual < bound
    return False


def tolerates(toleration: JsonObject, taint: JsonObject) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def has_untolerated_taint(node: JsonObject, tolerations: Sequence[JsonObject], effects: tuple[str, ...]) -> bool:
    """Whether the node has a taint with one of ``effects`` that no toleration tolerates."""
    taints = (node.get("spec") or {}).get("taints") or []
    return any(
        taint.get("effect") in effects and not any(tolerates(tol, taint) for tol in tolerations) for taint in taints
    )


def with_daemon_pod_tolerations(pod_spec: JsonObject) -> list[JsonObject]:
    """The pod's tolerations plus the ones the DaemonSet controller adds (unless already present)."""
    tolerations: list[JsonObject] = list(pod_spec.get("tolerations") or [])
    defaults = list(DAEMON_POD_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        defaults.append(HOST_NETWORK_TOLERATION)
    for toleration in defaults:
        if not any(_same_toleration(existing, toleration) for existing in tolerations):
            tolerations.append(dict(toleration))
    return tolerations


def _same_toleration(a: JsonObject, b: JsonObject) -> bool:
    return all((a.get(field) or "") == (b.get(field) or "") for field in ("key", "operator", "value", "effect"))
