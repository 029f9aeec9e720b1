"""Helpers of the upgrade integration tests: workloads that use Onload, node upgrade states, and the invariants
checked while a rollout runs (no version skew, budgets held)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import Cluster, onload_body

NS = "onload"
NAME = "onload"
APPS = "apps"
OLD, NEW = "8.1.2.26", "9.0.1"
ONLOAD_KEY, SFC_KEY, GATE, SELECTOR_KEY = names.node_label_keys(NS, NAME)
ONLOAD_READY = names.kmm_version_ready_label(NS, names.module_name(NAME))


def upgrade_spec(version: str = NEW) -> dict[str, Any]:
    return {"spec": {"onload": {"version": version, "userImage": f"onload-user:{version}"}}}


def workload(cluster: Cluster, node: str, name: str, *, app: str = "trader") -> None:
    """A pod that uses Onload, bound to ``node``."""
    cluster.core.create_namespaced_pod(
        APPS,
        {
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {
                "nodeName": node,
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "c",
                        "image": "trader:1",
                        "resources": {"requests": {names.RESOURCE_NAME: "1"}, "limits": {names.RESOURCE_NAME: "1"}},
                    }
                ],
            },
        },
    )


def running_with_workloads(cluster: Cluster, nodes: int, workloads: int) -> None:
    """Start the operator, run Onload 8.1.2.26 on ``nodes`` workers and a workload pod that uses it on each of
    the first ``workloads`` (``trader-<i>`` on ``worker-<i>``)."""
    cluster.start_operator()
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, NAME, selected=nodes, devicePluginReady=nodes)
    cluster.core.create_namespace({"metadata": {"name": APPS}})
    for index in range(workloads):
        workload(cluster, f"worker-{index}", f"trader-{index}")
    wait_for(lambda: pods_ready(cluster, workloads), message="the workloads to run")


def budget(cluster: Cluster, name: str, app: str, min_available: int) -> None:
    policy(cluster).create_namespaced_pod_disruption_budget(
        APPS,
        {
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": min_available},
        },
    )


def remove_budget(cluster: Cluster, name: str) -> None:
    policy(cluster).delete_namespaced_pod_disruption_budget(name, APPS)


def policy(cluster: Cluster) -> Any:
    return client.PolicyV1Api(cluster.core.api_client)


def stays(predicate: Callable[[], bool], seconds: float, message: str) -> None:
    """Assert that ``predicate`` holds on every poll for ``seconds`` (an absence cannot be waited for)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(0.05)


def pods_ready(cluster: Cluster, count: int) -> bool:
    pods = cluster.core.list_namespaced_pod(APPS).items
    return len(pods) == count and all(
        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in pods
    )


def nodes(cluster: Cluster) -> dict[str, Any]:
    return {n.metadata.name: n for n in cluster.core.list_node().items}


def state(node: Any) -> dict[str, Any] | None:
    text = (node.metadata.annotations or {}).get(names.UPGRADE_ANNOTATION)
    return None if text is None else dict(json.loads(text))


def tainted(node: Any) -> bool:
    return any(t.key == names.UPGRADE_TAINT for t in node.spec.taints or [])


def upgrade_status(cluster: Cluster) -> dict[str, Any]:
    return dict((cluster.onload(NS, NAME).get("status") or {}).get("upgrade") or {})


def wait_phase(cluster: Cluster, phase: str, timeout: float = 60.0, **counts: int) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = upgrade_status(cluster)
        return status if status.get("phase") == phase and status.items() >= counts.items() else None

    return wait_for(reached, timeout, f"upgrade phase {phase} with {counts}")


def plugin_pods(cluster: Cluster, node: str) -> list[Any]:
    pods = cluster.core.list_namespaced_pod(NS, field_selector=f"spec.nodeName={node}").items
    return [p for p in pods if (p.metadata.labels or {}).get(names.NAME_LABEL, "").startswith(f"{NAME}-onload-dp-")]


@dataclass
class Watcher:
    """Checks the invariants whenever a test polls: no skew on any node, budgets never exceeded."""

    cluster: Cluster
    max_unavailable: int = 1
    unavailable_seen: int = 0
    violations: list[str] = field(default_factory=list)

    def check(self) -> None:
        current = nodes(self.cluster)
        out = [n for n, node in current.items() if tainted(node) or node.spec.unschedulable]
        self.unavailable_seen = max(self.unavailable_seen, len(out))
        if len(out) > self.max_unavailable:
            self.violations.append(f"out of service at once: {out}")
        for name, node in current.items():
            labels = node.metadata.labels or {}
            gate = labels.get(GATE)
            if gate is not None and not (gate == labels.get(ONLOAD_KEY) == labels.get(ONLOAD_READY)):
                self.violations.append(f"skew on {name}: gate {gate}, modules {labels.get(ONLOAD_READY)}")

    def until(self, predicate: Callable[[], Any], timeout: float = 60.0, message: str = "") -> Any:
        def checked() -> Any:
            self.check()
            return predicate()

        result = wait_for(checked, timeout, message)
        assert self.violations == [], self.violations[:5]
        return result


def complete(cluster: Cluster, version: str, count: int) -> bool:
    """Every node runs ``version`` with its device plugin, nothing is tainted or annotated, the CR says so."""
    body = cluster.onload(NS, NAME)
    upgrade = (body.get("status") or {}).get("upgrade") or {}
    if upgrade.get("phase") != "Complete" or upgrade.get("progress") != f"{count}/{count}":
        return False
    for node in nodes(cluster).values():
        labels = node.metadata.labels or {}
        if labels.get(ONLOAD_KEY) != version or labels.get(GATE) != version or tainted(node) or state(node):
            return False
    return (body.get("status") or {}).get("version") == version


def delete_quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except ApiException as error:
        if error.status != 404:
            raise
