"""Onload CR bodies and snapshots for the unit tests."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onload_operator.actions import ApplyChild, DeleteChild, PatchChild, PatchNode, PatchStatus
from onload_operator.api.v1alpha1 import Onload
from onload_operator.observed import NodeView, Taint
from onload_operator.planner.reconcile import Plan, plan
from onload_operator.planner.snapshot import OnloadEntry, Snapshot, selector_matches
from onload_operator.render import names
from onload_operator.render.daemonset import device_plugin_daemonset
from onload_operator.render.modules import onload_module, sfc_module

IMAGE = "registry.example.com/onload-device-plugin:1.0"
KERNEL = "5.14.0-284.el9.x86_64"
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


def onload_module_of(cr: Onload) -> dict[str, Any]:
    """The onload Module of a CR no node runs yet (revision = version)."""
    return onload_module(cr, cr.spec.onload.version, "{}")


def sfc_module_of(cr: Onload) -> dict[str, Any] | None:
    return sfc_module(cr, cr.spec.onload.version) if cr.spec.uses_sfc else None


def daemonset_of(cr: Onload) -> dict[str, Any]:
    return device_plugin_daemonset(cr, cr.spec.onload.version, IMAGE)


def worker_nodes(count: int, **extra_labels: str) -> dict[str, dict[str, str]]:
    return {f"worker-{i}": {**SELECTOR, "kubernetes.io/hostname": f"worker-{i}", **extra_labels} for i in range(count)}


def entry(body: dict[str, Any]) -> OnloadEntry:
    meta = body["metadata"]
    return OnloadEntry(meta["namespace"], meta["name"], body["spec"].get("selector") or {}, meta["creationTimestamp"])


def views(
    nodes: dict[str, dict[str, str]],
    annotations: Mapping[str, Mapping[str, str]] | None = None,
    taints: Mapping[str, tuple[Taint, ...]] | None = None,
) -> dict[str, NodeView]:
    """Nodes as the planner sees them, from their labels (and annotations and taints, where given)."""
    return {
        name: NodeView(
            name,
            labels=dict(labels),
            annotations=dict((annotations or {}).get(name) or {}),
            taints=(taints or {}).get(name, ()),
            kernel_version=KERNEL,
        )
        for name, labels in nodes.items()
    }


def snapshot(
    body: dict[str, Any],
    nodes: dict[str, dict[str, str]],
    annotations: Mapping[str, Mapping[str, str]] | None = None,
    taints: Mapping[str, tuple[Taint, ...]] | None = None,
    **kwargs: Any,
) -> Snapshot:
    kwargs.setdefault("onloads", [entry(body)])
    return Snapshot(body=body, nodes=views(nodes, annotations, taints), **kwargs)


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
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)
    taints: dict[str, tuple[Taint, ...]] = field(default_factory=dict)

    def plan(self, **kwargs: Any) -> Plan:
        kwargs.setdefault("onloads", [entry(body) for body in (self.body, *self.others)])
        world = snapshot(self.body, self.nodes, self.annotations, self.taints, children=self.children, **kwargs)
        return plan(world, IMAGE, NOW)

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
                merge(self.annotations.setdefault(action.node, {}), action.annotations)
                if action.taints is not None:
                    self.taints[action.node] = action.taints
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
                version_ready = names.kmm_version_ready_label(namespace, module)
                version = labels.get(names.kmm_version_label(namespace, module))
                if child is not None and selector_matches(selector, labels) and version is not None:
                    labels[ready] = ""
                    labels[version_ready] = version
                else:
                    labels.pop(ready, None)
                    labels.pop(version_ready, None)
        gate = names.onload_label(namespace, name)
        for (kind, _), child in self.children.items():
            if kind != "DaemonSet":
                continue
            revision = child["metadata"]["labels"].get(names.REVISION_LABEL)
            # The single DaemonSet of earlier operators (no revision) runs wherever the gate label is.
            gated = sum(gate in labels and revision in (None, labels[gate]) for labels in self.nodes.values())
            child["status"] = {"desiredNumberScheduled": gated, "updatedNumberScheduled": gated, "numberReady": gated}


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
