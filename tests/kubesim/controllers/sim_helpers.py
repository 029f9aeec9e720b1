"""Polling and object builders shared by the controller tests."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from kubesim.nodes import nodes_from_spec
from kubesim.objectstore import ObjectStore

JsonObject = dict[str, Any]


def add_nodes(store: ObjectStore, spec: str) -> list[str]:
    """Create the nodes of a kubesim node spec; returns their names."""
    names = []
    for node in nodes_from_spec(spec):
        store.create("v1/nodes", node)
        names.append(node["metadata"]["name"])
    return names


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:  # noqa: ASYNC109
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def daemonset(
    name: str = "agent",
    namespace: str = "default",
    *,
    node_selector: dict[str, str] | None = None,
    affinity: JsonObject | None = None,
    tolerations: list[JsonObject] | None = None,
    image: str = "registry.example/agent:1.0",
    strategy: JsonObject | None = None,
    min_ready_seconds: int = 0,
    resources: JsonObject | None = None,
) -> JsonObject:
    pod_spec: JsonObject = {"containers": [{"name": "agent", "image": image}]}
    if resources:
        pod_spec["containers"][0]["resources"] = resources
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if affinity:
        pod_spec["affinity"] = affinity
    if tolerations:
        pod_spec["tolerations"] = tolerations
    spec: JsonObject = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
    }
    if min_ready_seconds:
        spec["minReadySeconds"] = min_ready_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod(
    name: str,
    node: str | None,
    namespace: str = "default",
    *,
    requests: dict[str, str] | None = None,
    host_network: bool = False,
) -> JsonObject:
    container: JsonObject = {"name": "main", "image": "registry.example/app:2.1", "command": ["sleep", "inf"]}
    if requests:
        container["resources"] = {"requests": dict(requests), "limits": dict(requests)}
    spec: JsonObject = {"containers": [container], "restartPolicy": "Never"}
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def module(
    name: str = "onload-module",
    namespace: str = "onload",
    *,
    selector: dict[str, str] | None = None,
    mappings: list[JsonObject] | None = None,
    version: str | None = None,
) -> JsonObject:
    container: JsonObject = {
        "modprobe": {"moduleName": "onload", "parameters": ["--first-time"]},
        "kernelMappings": mappings
        if mappings is not None
        else [{"regexp": "el9", "containerImage": "registry.example/onload-module:${KERNEL_FULL_VERSION}"}],
    }
    if version is not None:
        container["version"] = version
    return {
        "apiVersion": "kmm.sigs.x-k8s.io/v1beta1",
        "kind": "Module",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": selector if selector is not None else {"node-role.kubernetes.io/worker": ""},
            "moduleLoader": {"container": container},
        },
    }
