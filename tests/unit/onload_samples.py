"""Onload CR bodies and snapshots for the unit tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from onload_operator.planner.reconcile import Plan, plan
from onload_operator.planner.snapshot import OnloadEntry, Snapshot
from onload_operator.render import names

IMAGE = "registry.example.com/onload-device-plugin:1.0"
NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"
SELECTOR = {"node-role.kubernetes.io/worker": ""}


def cr_body(name: str = "onload", namespace: str = "ns", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": dict(SELECTOR),
        "serviceAccountName": "onload-sa",
        "onload": {
            "version": "8.1.2.26",
            "userImage": "onload-user:8.1.2.26",
            "kernelMappings": [
                {"regexp": r"^.*\.x86_64$", "kernelModuleImage": "onload-module:${KERNEL_FULL_VERSION}"}
            ],
        },
        "devicePlugin": {},
    }
    spec.update(copy.deepcopy(spec_overrides))
    return {
        "apiVersion": "onload.amd.com/v1alpha1",
        "kind": "Onload",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
    }


def worker_nodes(count: int, **extra_labels: str) -> dict[str, dict[str, str]]:
    return {f"worker-{i}": {**SELECTOR, "kubernetes.io/hostname": f"worker-{i}", **extra_labels} for i in range(count)}


def entry(body: dict[str, Any]) -> OnloadEntry:
    meta = body["metadata"]
    return OnloadEntry(meta["namespace"], meta["name"], body["spec"].get("selector") or {}, meta["creationTimestamp"])


def snapshot(body: dict[str, Any], nodes: dict[str, dict[str, str]], **kwargs: Any) -> Snapshot:
    kwargs.setdefault("onloads", [entry(body)])
    return Snapshot(body=body, nodes=nodes, **kwargs)


@dataclass
class World:
    """A pretend cluster that carries out plans: children stored, labels set, KMM loads, the DaemonSet runs."""

    body: dict[str, Any]
    nodes: dict[str, dict[str, str]]
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    plans: list[Plan] = field(default_factory=list)

    def plan(self, **kwargs: Any) -> Plan:
        return plan(snapshot(self.body, self.nodes, children=self.children, **kwargs), IMAGE, NOW)


def converge(world: World, rounds: int = 10) -> World:
    """Carry out plans until one plans no write; the World then is what a converged cluster looks like."""
    body, nodes, children = world.body, world.nodes, world.children
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for _ in range(rounds):
        result = world.plan()
        world.plans.append(result)
        if not result.writes:
            return world
        for apply in result.applies:
            children[(apply.manifest["kind"], apply.manifest["metadata"]["name"])] = copy.deepcopy(apply.manifest)
        for patch in result.node_patches:
            labels = nodes[patch.node]
            for key, value in patch.labels.items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = value
        # KMM loads the module where the version label is set; the DaemonSet runs where the gate label is.
        for labels in nodes.values():
            for module in (names.module_name(name), names.sfc_module_name(name)):
                if names.kmm_version_label(namespace, module) in labels:
                    labels[names.kmm_ready_label(namespace, module)] = ""
        gated = sum(names.onload_label(namespace, name) in labels for labels in nodes.values())
        ds = children.get(("DaemonSet", names.device_plugin_name(name)))
        if ds is not None:
            ds["status"] = {"desiredNumberScheduled": gated, "updatedNumberScheduled": gated, "numberReady": gated}
        if result.status is not None:
            body["status"] = result.status
    raise AssertionError("did not converge")
