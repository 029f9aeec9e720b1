"""Onload CR bodies and snapshots for the unit tests."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onload_operator.actions import ApplyChild, DeleteChild, PatchChild, PatchNode, PatchStatus
from onload_operator.observed import NodeView
from onload_operator.planner.reconcile import Plan, plan
from onload_operator.planner.snapshot import OnloadEntry, Snapshot, selector_matches
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


def views(nodes: dict[str, dict[str, str]]) -> dict[str, NodeView]:
    """Nodes as the planner sees them, from their labels."""
    return {name: NodeView(name, labels=dict(labels)) for name, labels in nodes.items()}


def snapshot(body: dict[str, Any], nodes: dict[str, dict[str, str]], **kwargs: Any) -> Snapshot:
    kwargs.setdefault("onloads", [entry(body)])
    return Snapshot(body=body, nodes=views(nodes), **kwargs)


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """A JSON merge patch (RFC 7386) applied in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


@dataclass
class World:
    """A pretend cluster that carries out plans: children stored, labels set, KMM loads, the DaemonSet runs."""

    body: dict[str, Any]
    nodes: dict[str, dict[str, str]]
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    plans: list[Plan] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)
    """Bodies of the other Onload CRs of the cluster (read at each plan, so edits to them count)."""

    def plan(self, **kwargs: Any) -> Plan:
        kwargs.setdefault("onloads", [entry(body) for body in (self.body, *self.others)])
        return plan(snapshot(self.body, self.nodes, children=self.children, **kwargs), IMAGE, NOW)

    def carry_out(self, result: Plan) -> None:
        """Run a plan's actions in order as the executor does, then let KMM and the DaemonSet act."""
        for action in result.actions:
            if isinstance(action, DeleteChild):  # the foreground deletion, finished at once
                del self.children[(action.kind, action.name)]
            elif isinstance(action, ApplyChild):
                key = (action.manifest["kind"], action.manifest["metadata"]["name"])
                self.children[key] = copy.deepcopy(action.manifest)
            elif isinstance(action, PatchChild):
                merge(self.children[(action.kind, action.name)], action.patch)
            elif isinstance(action, PatchNode):
                merge(self.nodes[action.node], action.labels)
            elif isinstance(action, PatchStatus):
                self.body["status"] = dict(action.status)
        self.run_kmm()

    def run_kmm(self) -> None:
        """KMM loads a Module where its selector matches and the version label is set, and unloads it elsewhere;
        the DaemonSet runs where the gate label is."""
        namespace, name = self.body["metadata"]["namespace"], self.body["metadata"]["name"]
        for labels in self.nodes.values():
            for module in (names.module_name(name), names.sfc_module_name(name)):
                child = self.children.get(("Module", module))
                selector = (child or {}).get("spec", {}).get("selector") or {}
                ready = names.kmm_ready_label(namespace, module)
                if child is not None and selector_matches(selector, labels):
                    if names.kmm_version_label(namespace, module) in labels:
                        labels[ready] = ""
                    else:
                        labels.pop(ready, None)
                else:
                    labels.pop(ready, None)
        gated = sum(names.onload_label(namespace, name) in labels for labels in self.nodes.values())
        ds = self.children.get(("DaemonSet", names.device_plugin_name(name)))
        if ds is not None:
            ds["status"] = {"desiredNumberScheduled": gated, "updatedNumberScheduled": gated, "numberReady": gated}


def converge(world: World, rounds: int = 10) -> World:
    """Carry out plans until one plans no write; the World then is what a converged cluster looks like."""
    for _ in range(rounds):
        result = world.plan()
        world.plans.append(result)
        if not result.writes:
            return world
        world.carry_out(result)
    raise AssertionError("did not converge")


def conditions(status: Mapping[str, Any]) -> dict[str, tuple[object, object]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
