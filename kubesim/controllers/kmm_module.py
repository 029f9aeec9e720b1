"""What the simulated KMM reads from a ``Module`` and writes: the node labels of loaded modules, the kernel mapping
and image for a node, the worker pod of a load or unload, and which nodes taints exclude."""

from functools import lru_cache
from typing import Any

import re2

from kubesim.controllers.runtime import Key, object_key
from kubesim.controllers.scheduling import has_untolerated_taint
from kubesim.objectstore import JsonObject

MODULE_NAME_LABEL = "kmm.node.kubernetes.io/module.name"
LABEL_PREFIX = "kmm.node.kubernetes.io/"
KMM_TOLERATIONS: tuple[JsonObject, ...] = tuple(
    {"key": f"node.kubernetes.io/{pressure}-pressure", "operator": "Exists", "effect": "NoSchedule"}
    for pressure in ("disk", "memory", "pid")
)
"""Tolerations KMM adds to every Module's own when it decides which nodes it targets."""
EXCLUDING_EFFECTS = ("NoSchedule", "NoExecute")


def ready_label(namespace: str, name: str) -> str:
    return f"{LABEL_PREFIX}{namespace}.{name}.ready"


def version_ready_label(namespace: str, name: str) -> str:
    return f"{LABEL_PREFIX}{namespace}.{name}.version.ready"


def version_label(namespace: str, name: str) -> str:
    return f"{LABEL_PREFIX}version-module.{namespace}.{name}"


def modules_loaded_on(labels: dict[str, str]) -> list[Key]:
    """Modules whose ready label the node carries (a namespace has no dots, so it ends at the first one)."""
    loaded = []
    for label in labels:
        if not label.startswith(LABEL_PREFIX) or not label.endswith(".ready") or label.endswith(".version.ready"):
            continue
        namespace, dot, name = label[len(LABEL_PREFIX) : -len(".ready")].partition(".")
        if dot and "/" not in namespace:
            loaded.append((namespace, name))
    return loaded


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """The RE2 program for a pattern, or None when RE2 rejects it."""
    try:
        return re2.compile(pattern)
    except re2.error:
        return None


def kernel_mapping_for(module: JsonObject, kernel: str) -> JsonObject | None:
    """The first kernel mapping of the Module that matches the kernel version, if any."""
    container = ((module.get("spec") or {}).get("moduleLoader") or {}).get("container") or {}
    kernel = kernel.removesuffix("+")
    for mapping in container.get("kernelMappings") or []:
        literal, regexp = mapping.get("literal"), mapping.get("regexp")
        if literal:
            if literal == kernel:
                return dict(mapping)
        elif regexp:
            compiled = _compiled(regexp)
            if compiled is not None and compiled.search(kernel):
                return dict(mapping)
    return None


def container_image(module: JsonObject, kernel: str) -> str:
    """The module image for a kernel, with KMM's ${KERNEL_FULL_VERSION}-style variables substituted."""
    container = ((module.get("spec") or {}).get("moduleLoader") or {}).get("container") or {}
    mapping = kernel_mapping_for(module, kernel) or {}
    image = str(mapping.get("containerImage") or container.get("containerImage") or "")
    normalized = re2.sub(r"[^a-zA-Z0-9._-]", "_", kernel.removesuffix("+"))
    parts = re2.split(r"[.,-]", kernel)
    namespace, name = object_key(module)
    variables = {
        "KERNEL_FULL_VERSION": normalized,
        "KERNEL_VERSION": normalized,
        "KERNEL_XYZ": ".".join(parts[:3]),
        "KERNEL_X": parts[0],
        "KERNEL_Y": parts[1] if len(parts) > 1 else "",
        "KERNEL_Z": parts[2] if len(parts) > 2 else "",
        "MOD_NAME": name,
        "MOD_NAMESPACE": namespace,
    }
    for variable, value in variables.items():
        image = image.replace("${" + variable + "}", value)
    return image


def worker_pod_name(pair: tuple[Key, str]) -> str:
    (_, name), node_name = pair
    return f"kmm-worker-{node_name}-{name}"[:253]


def worker_pod(module: JsonObject, node: JsonObject, verb: str) -> JsonObject:
    """A KMM v2 style worker pod that loads or unloads the module on the node."""
    namespace, name = object_key(module)
    node_name = node["metadata"]["name"]
    spec = module.get("spec") or {}
    loader = spec.get("moduleLoader") or {}
    kernel = ((node.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion") or ""
    pod_spec: JsonObject = {
        "nodeName": node_name,
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "worker",
                "image": container_image(module, kernel),
                "args": ["kmod", verb, "/etc/kmm-worker/config.yaml"],
                "securityContext": {"privileged": True},
            }
        ],
    }
    if loader.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = loader["serviceAccountName"]
    if spec.get("tolerations"):
        pod_spec["tolerations"] = list(spec["tolerations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": worker_pod_name(((namespace, name), node_name)),
            "namespace": namespace,
            "labels": {MODULE_NAME_LABEL: name, "kmm.node.kubernetes.io/worker-action": verb},
        },
        "spec": pod_spec,
    }


def excluded_by_taints(module: JsonObject | None, node: JsonObject) -> bool:
    """Whether KMM leaves the node alone for this Module: a NoSchedule/NoExecute taint is not tolerated."""
    tolerations = [*(((module or {}).get("spec") or {}).get("tolerations") or []), *KMM_TOLERATIONS]
    return has_untolerated_taint(node, tolerations, EXCLUDING_EFFECTS)


def module_version(module: JsonObject) -> str:
    container = ((module.get("spec") or {}).get("moduleLoader") or {}).get("container") or {}
    return str(container.get("version") or "")
