"""What the simulated DaemonSet controller builds and reads: the daemon pod of a node, its revision labels and
owner, and the readiness and order of existing pods."""

import copy
import hashlib
import json
import math
from typing import Any

from kubesim.controllers.scheduling import with_daemon_pod_tolerations
from kubesim.objects import parse_rfc3339
from kubesim.objectstore import JsonObject

REVISION_HASH_LABEL = "controller-revision-hash"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"


def template_hash(template: JsonObject) -> str:
    """A stable hash of the pod template, used as the ``controller-revision-hash`` label."""
    encoded = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:10]


def controller_uid(pod: JsonObject) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "DaemonSet":
            uid: str = ref.get("uid", "")
            return uid
    return None


def ready_since(pod: JsonObject) -> float | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            stamp = condition.get("lastTransitionTime")
            return parse_rfc3339(stamp).timestamp() if stamp else 0.0
    return None


def creation_order(pod: JsonObject) -> tuple[str, str]:
    metadata = pod["metadata"]
    return (metadata.get("creationTimestamp") or "", metadata["name"])


def max_unavailable(ds: JsonObject, desired: int) -> int:
    strategy = ds["spec"].get("updateStrategy") or {}
    value: Any = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    if isinstance(value, str) and value.endswith("%"):
        allowed = math.ceil(int(value[:-1]) * desired / 100)
    else:
        allowed = int(value)
    return allowed or 1  # without surge, zero would never let the update progress


def daemon_pod(
    ds: JsonObject, uid: str, revision_hash: str, template_generation: int | None, node_name: str
) -> JsonObject:
    """The pod of the DaemonSet for one node (without a name), as the controller creates it."""
    namespace, ds_name = ds["metadata"]["namespace"], ds["metadata"]["name"]
    template = ds["spec"].get("template") or {}
    template_meta = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    spec["nodeName"] = node_name
    spec["tolerations"] = with_daemon_pod_tolerations(spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]
    }
    labels = dict(template_meta.get("labels") or {})
    labels[REVISION_HASH_LABEL] = revision_hash
    if template_generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = str(template_generation)
    metadata: JsonObject = {
        "namespace": namespace,
        "generateName": f"{ds_name}-",
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": ds_name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if template_meta.get("annotations"):
        metadata["annotations"] = dict(template_meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
