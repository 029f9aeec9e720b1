"""Defaults and validation of built-in kinds, the parts of upstream's registry strategies that clients notice."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from kubesim.errors import ApiError, invalid
from kubesim.selectors import label_selector_matcher
from kubesim.syntax import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    label_key_problem,
    label_value_problem,
    qualified_name_problems,
)

JsonObject = dict[str, Any]
Cause = dict[str, str]

_DNS_LABEL_KINDS = frozenset({"Namespace", "Service"})

RETURNS_DELETED_OBJECT = frozenset(
    {"v1/pods", "v1/services", "v1/serviceaccounts", "v1/persistentvolumes", "v1/persistentvolumeclaims"}
)
"""Kinds whose registry answers a DELETE that removes the object at once with the object itself (upstream's
``ReturnDeletedObject``); every other kind answers with a ``Status`` naming it."""


def deleted_status(resource_type_key: str, group: str, plural: str, removed: JsonObject) -> JsonObject:
    """The body of a DELETE that removed ``removed`` at once."""
    if resource_type_key in RETURNS_DELETED_OBJECT:
        return removed
    details: JsonObject = {"name": removed["metadata"]["name"], "kind": plural, "uid": removed["metadata"]["uid"]}
    if group:
        details["group"] = group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def validate_name(kind: str, group: str, name: str) -> None:
    pattern, limit = (DNS_LABEL, 63) if kind in _DNS_LABEL_KINDS else (DNS_SUBDOMAIN, 253)
    if len(name) > limit or not pattern.match(name):
        raise invalid(
            kind,
            name,
            group,
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.name",
                    "message": f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower case '
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                }
            ],
        )


_ANNOTATIONS_LIMIT = 256 * 1024


def _finalizer_causes(finalizers: list[Any]) -> list[Cause]:
    """apimachinery's ValidateFinalizers: each name is a qualified name; orphan and foregroundDeletion exclude each
    other."""
    causes = [
        {
            "reason": "FieldValueInvalid",
            "message": f'Invalid value: "{name}": {problem}',
            "field": "metadata.finalizers",
        }
        for name in finalizers
        for problem in qualified_name_problems(str(name))
    ]
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {json.dumps(finalizers)}: "
                "finalizers orphan and foregroundDeletion cannot be both set",
                "field": "metadata.finalizers",
            }
        )
    return causes


def _metadata_causes(meta: JsonObject) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        problem = label_key_problem(key)
        if problem:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "{key}": {problem}',
                    "field": "metadata.labels",
                }
            )
        value_problem = label_value_problem(value) if isinstance(value, str) else "a label value must be a string"
        if value_problem:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {value!r}: {value_problem}",
                    "field": "metadata.labels",
                }
            )
    annotations = meta.get("annotations") or {}
    for key in annotations:
        problem = label_key_problem(key)
        if problem:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "{key}": {problem}',
                    "field": "metadata.annotations",
                }
            )
    causes.extend(_finalizer_causes(meta.get("finalizers") or []))
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > _ANNOTATIONS_LIMIT:
        causes.append(
            {
                "reason": "FieldValueTooLong",
                "message": "Too long: must have at most 262144 bytes",
                "field": "metadata.annotations",
            }
        )
    return causes


def validate_metadata(kind: str, group: str, obj: JsonObject) -> None:
    """Label and annotation syntax, which the API server checks on every object."""
    causes = _metadata_causes(obj.get("metadata") or {})
    if causes:
        raise invalid(kind, obj["metadata"].get("name", ""), group, causes)


def _default_container(container: JsonObject) -> None:
    image = str(container.get("image", ""))
    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def default_pod_spec(spec: JsonObject) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    if "serviceAccountName" in spec:
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or []:
            _default_container(container)
    if spec.get("tolerations") is None and spec.get("nodeName") is None:
        spec["tolerations"] = [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
        ]


def _default_pod(obj: JsonObject) -> None:
    default_pod_spec(obj.setdefault("spec", {}))


def _default_daemonset(obj: JsonObject) -> None:
    spec = obj.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def _default_deployment(obj: JsonObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def _default_service(obj: JsonObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


def _default_namespace(obj: JsonObject) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


def _default_secret(obj: JsonObject) -> None:
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj.setdefault("type", "Opaque")


# Defaults applied on every write, as the API server defaults every object it decodes.
DEFAULTS: dict[str, Callable[[JsonObject], None]] = {
    "v1/pods": _default_pod,
    "apps/v1/daemonsets": _default_daemonset,
    "apps/v1/deployments": _default_deployment,
    "v1/services": _default_service,
    "v1/namespaces": _default_namespace,
    "v1/secrets": _default_secret,
}

# The status an object of these kinds starts with (a created object's own status is dropped).
INITIAL_STATUS: dict[str, JsonObject] = {
    "v1/pods": {"phase": "Pending", "qosClass": "BestEffort"},
    "apps/v1/daemonsets": {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
    "v1/services": {"loadBalancer": {}},
    "v1/namespaces": {"phase": "Active"},
    "policy/v1/poddisruptionbudgets": {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
}


def _required(causes: list[Cause], obj: JsonObject, path: str) -> None:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value in (None, "", [], {}):
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": path})


def _validate_pod_spec(causes: list[Cause], spec: JsonObject, prefix: str) -> None:
    containers = spec.get("containers")
    if not containers:
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": f"{prefix}.containers"})
        return
    for index, container in enumerate(containers):
        for field in ("name", "image"):
            if not container.get(field):
                causes.append(
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value",
                        "field": f"{prefix}.containers[{index}].{field}",
                    }
                )


def _selector_matches_labels(selector: JsonObject, labels: JsonObject) -> bool:
    return bool(selector) and label_selector_matcher(selector)(labels)


def _validate_workload(causes: list[Cause], obj: JsonObject) -> None:
    spec = obj.get("spec") or {}
    _required(causes, obj, "spec.selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if spec.get("selector") and not _selector_matches_labels(spec["selector"], labels):
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {labels}: `selector` does not match template `labels`",
                "field": "spec.template.metadata.labels",
            }
        )
    _validate_pod_spec(causes, template.get("spec") or {}, "spec.template.spec")


def _validate_pdb(causes: list[Cause], obj: JsonObject) -> None:
    spec = obj.get("spec") or {}
    if "minAvailable" in spec and "maxUnavailable" in spec:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: minAvailable and maxUnavailable cannot be both set",
                "field": "spec",
            }
        )


def _validate_node(causes: list[Cause], obj: JsonObject) -> None:
    for index, taint in enumerate((obj.get("spec") or {}).get("taints") or []):
        if taint.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            causes.append(
                {
                    "reason": "FieldValueNotSupported",
                    "message": f'Unsupported value: "{taint.get("effect")}": supported values: '
                    '"NoSchedule", "PreferNoSchedule", "NoExecute"',
                    "field": f"spec.taints[{index}].effect",
                }
            )


VALIDATORS: dict[str, Callable[[list[Cause], JsonObject], None]] = {
    "v1/pods": lambda causes, obj: _validate_pod_spec(causes, obj.get("spec") or {}, "spec"),
    "apps/v1/daemonsets": _validate_workload,
    "apps/v1/deployments": _validate_workload,
    "policy/v1/poddisruptionbudgets": _validate_pdb,
    "v1/nodes": _validate_node,
}


def validate_builtin(key: str, kind: str, group: str, obj: JsonObject) -> None:
    """Raise 422 Invalid for the violations of the rules upstream checks on this kind."""
    validator = VALIDATORS.get(key)
    if validator is None:
        return
    causes: list[Cause] = []
    validator(causes, obj)
    if causes:
        raise invalid(kind, obj["metadata"].get("name", ""), group, causes)


_MUTABLE_POD_SPEC = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds`"
)


def check_pod_update(old: JsonObject, new: JsonObject) -> None:
    """Pods are immutable but for container images, activeDeadlineSeconds, added tolerations and the grace period."""
    old_spec = old.get("spec") or {}
    munged = dict(new.get("spec") or {})
    for field in ("containers", "initContainers"):
        old_containers = old_spec.get(field) or []
        new_containers = munged.get(field) or []
        if field in munged and len(old_containers) == len(new_containers):
            munged[field] = [
                {**n, "image": o.get("image")} if isinstance(n, dict) else n
                for o, n in zip(old_containers, new_containers, strict=True)
            ]
    old_tolerations = old_spec.get("tolerations") or []
    new_tolerations = munged.get("tolerations") or []
    if new_tolerations[: len(old_tolerations)] == old_tolerations:
        munged["tolerations"] = old_spec.get("tolerations")
    for field in ("activeDeadlineSeconds", "terminationGracePeriodSeconds"):
        munged[field] = old_spec.get(field)
    comparable = {k: v for k, v in munged.items() if v is not None}
    if comparable != {k: v for k, v in old_spec.items() if v is not None}:
        raise invalid(
            "Pod",
            old["metadata"]["name"],
            "",
            [
                {
                    "reason": "FieldValueForbidden",
                    "message": f"Forbidden: pod updates may not change fields other than {_MUTABLE_POD_SPEC}",
                    "field": "spec",
                }
            ],
        )


def _immutable(kind: str, group: str, name: str, field: str, value: Any) -> ApiError:
    return invalid(
        kind,
        name,
        group,
        [{"reason": "FieldValueInvalid", "message": f"Invalid value: {value!r}: field is immutable", "field": field}],
    )


def _check_workload_update(old: JsonObject, new: JsonObject) -> None:
    old_selector = (old.get("spec") or {}).get("selector")
    new_selector = (new.get("spec") or {}).get("selector")
    if old_selector != new_selector:
        raise _immutable(new["kind"], "apps", old["metadata"]["name"], "spec.selector", new_selector)


def _update_service(old: JsonObject, new: JsonObject) -> None:
    """An update keeps the allocated cluster IP when it names none, and may not change it."""
    old_spec = old.get("spec") or {}
    new_spec = new.setdefault("spec", {})
    if not new_spec.get("clusterIP") and old_spec.get("clusterIP"):
        new_spec["clusterIP"] = old_spec["clusterIP"]
        new_spec["clusterIPs"] = old_spec.get("clusterIPs", [old_spec["clusterIP"]])
    if old_spec.get("clusterIP") and new_spec.get("clusterIP") != old_spec["clusterIP"]:
        raise _immutable("Service", "", old["metadata"]["name"], "spec.clusterIP", new_spec.get("clusterIP"))


def _check_immutable_data(old: JsonObject, new: JsonObject) -> None:
    if not old.get("immutable"):
        return
    for field in ("data", "binaryData", "immutable"):
        if old.get(field) != new.get(field):
            raise invalid(
                old["kind"],
                old["metadata"]["name"],
                "",
                [
                    {
                        "reason": "FieldValueForbidden",
                        "message": "Forbidden: field is immutable when `immutable` is set",
                        "field": field,
                    }
                ],
            )


# Rules upstream applies when an object is updated: immutable fields, kept allocations.
UPDATE_RULES: dict[str, Callable[[JsonObject, JsonObject], None]] = {
    "v1/pods": check_pod_update,
    "apps/v1/daemonsets": _check_workload_update,
    "apps/v1/deployments": _check_workload_update,
    "v1/services": _update_service,
    "v1/configmaps": _check_immutable_data,
    "v1/secrets": _check_immutable_data,
}


def forbid(message: str, details: JsonObject | None = None) -> ApiError:
    return ApiError(403, "Forbidden", message, details)
