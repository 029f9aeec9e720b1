"""Which revisions the children are rendered from: the one the nodes are moved to, and those they still run.

The registry of revisions lives on the onload Module (see ``upgrade.revisions``); the nodes say which revisions
they run (their KMM version labels and gate label) or are moved between (their upgrade state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from onload_operator.api.v1alpha1 import Onload
from onload_operator.observed import NodeView
from onload_operator.planner import takeover
from onload_operator.planner.snapshot import ChildKey, JsonObject
from onload_operator.render import names
from onload_operator.render.children import Deployment, encode_registry, revision_record
from onload_operator.upgrade.revisions import Registry, assign_target, decode_registry, onload_with, pruned, uses_sfc
from onload_operator.upgrade.state import state_of


@dataclass(frozen=True)
class Revisions:
    deployment: Deployment
    registry: Registry
    present: frozenset[str]
    """Revisions that some node runs or is moved from or to."""

    @property
    def target(self) -> str:
        return self.deployment.revision

    def version(self, revision: str) -> str:
        """The Onload version of a revision (the revision itself when it is not recorded)."""
        return str(((self.registry.get(revision) or {}).get("onload") or {}).get("version") or revision)


def recorded_registry(name: str, children: Mapping[ChildKey, JsonObject]) -> Registry:
    module = children.get(("Module", names.module_name(name))) or {}
    annotations = (module.get("metadata") or {}).get("annotations") or {}
    return decode_registry(annotations.get(names.REVISIONS_ANNOTATION))


def revisions_on_nodes(
    namespace: str, name: str, nodes: Mapping[str, NodeView]
) -> tuple[set[str], dict[str, list[str]]]:
    """The revisions the nodes carry, and the kernels of the nodes that run each."""
    onload_key, sfc_key, gate_key, _ = names.node_label_keys(namespace, name)
    present: set[str] = set()
    kernels: dict[str, list[str]] = {}
    for node in nodes.values():
        present |= {value for key in (onload_key, sfc_key, gate_key) if (value := node.labels.get(key))}
        running = node.labels.get(onload_key)
        if running:
            kernels.setdefault(running, []).append(node.kernel_version)
        state = state_of(node, namespace, name)
        if state is not None:
            present |= {state.source, state.target} - {""}
    return present, kernels


def plan_revisions(onload: Onload, children: Mapping[ChildKey, JsonObject], nodes: Mapping[str, NodeView]) -> Revisions:
    """The target revision of the CR, the registry that records it, and what to render."""
    namespace, name = onload.metadata.namespace, onload.metadata.name
    present, kernels = revisions_on_nodes(namespace, name, nodes)
    recorded = recorded_registry(name, children) or takeover.legacy_registry(onload, children)
    target, registry = assign_target(revision_record(onload), recorded, kernels)
    registry = pruned(registry, present | {target})
    plugins = {target: onload}
    for revision in sorted(present & set(registry) - {target}):
        older = onload_with(onload, registry[revision])
        if older is not None:
            plugins[revision] = older
    sfc: tuple[str, Onload] | None = (target, onload) if onload.spec.uses_sfc else None
    if sfc is None:
        sfc_key = names.kmm_version_label(namespace, names.sfc_module_name(name))
        in_use = sorted({r for node in nodes.values() if (r := node.labels.get(sfc_key)) in plugins})
        sfc = next(((r, plugins[r]) for r in in_use if uses_sfc(registry[r])), None)
    deployment = Deployment(onload, target, encode_registry(registry), plugins, sfc)
    return Revisions(deployment, registry, frozenset(present))
