"""Pods: read per node (never cached cluster-wide), evicted through the Eviction API, or deleted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from onload_operator.actions import DeletePod, EvictionOutcome, EvictionResult, EvictPod
from onload_operator.io.client import Kube, json_of
from onload_operator.observed import PodView, pod_view
from onload_operator.render import names


def pods_on_node(kube: Kube, node: str) -> list[PodView]:
    """Every pod bound to ``node``, in all namespaces."""
    response: Any = kube.core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node}", _preload_content=False
    )
    return [pod_view(pod) for pod in json_of(response).get("items") or []]


def device_plugin_pods(kube: Kube, namespace: str, daemonsets: Sequence[str]) -> list[PodView]:
    """The pods of the CR's device-plugin DaemonSets (running or still terminating)."""
    if not daemonsets:
        return []
    selector = f"{names.NAME_LABEL} in ({','.join(sorted(daemonsets))})"
    response: Any = kube.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
    return [pod_view(pod) for pod in json_of(response).get("items") or []]


def _message(error: ApiException) -> str:
    """The server's message and its causes (for a 429, a cause names the PodDisruptionBudget), else the HTTP
    reason."""
    try:
        status = json.loads(error.body or "{}")
    except ValueError:
        return str(error.reason or "")
    causes = [str(c.get("message")) for c in (status.get("details") or {}).get("causes") or [] if c.get("message")]
    return ": ".join([str(status.get("message") or error.reason or ""), *causes])


def _gone(error: ApiException) -> bool:
    """404: no such pod; 409: the uid precondition failed, the name is another pod's by now."""
    return error.status in (404, 409)


def evict_pod(kube: Kube, action: EvictPod) -> EvictionResult:
    eviction = client.V1Eviction(
        metadata=client.V1ObjectMeta(name=action.name, namespace=action.namespace),
        delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=action.uid)),
    )
    try:
        kube.write(
            "create",
            "pods/eviction",
            lambda: kube.core.create_namespaced_pod_eviction(
                action.name, action.namespace, eviction, _preload_content=False
            ),
        )
    except ApiException as error:
        if error.status == 429:
            return EvictionResult(action, EvictionOutcome.BLOCKED, _message(error))
        if _gone(error):
            return EvictionResult(action, EvictionOutcome.GONE, _message(error))
        raise
    return EvictionResult(action, EvictionOutcome.EVICTED)


def delete_pod(kube: Kube, action: DeletePod) -> EvictionResult:
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=action.uid))
    try:
        kube.write(
            "delete",
            "pods",
            lambda: kube.core.delete_namespaced_pod(
                action.name, action.namespace, body=options, _preload_content=False
            ),
        )
    except ApiException as error:
        if _gone(error):
            return EvictionResult(action, EvictionOutcome.GONE, _message(error))
        raise
    return EvictionResult(action, EvictionOutcome.EVICTED)
