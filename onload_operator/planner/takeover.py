"""Taking over a cluster from the Go Onload Operator v3: every rule that exists only for what it left behind.

The rest of the planner reads as the steady-state protocol; this module is where the Go operator's history is.

What the Go operator (v3.0 and v3.1) did differently, and what follows here:

- Its children carry no record of the revisions the nodes run (``onload.amd.com/revisions`` on the onload Module):
  the version, userImage and kernelMappings the nodes run are read back from its Module and DaemonSet
  (``adopted_deployment``), or from the ``onload.amd.com/deployed-onload`` annotation of this operator's first
  release, and become the first revision (``legacy_registry``), so taking over a cluster mid-way changes nothing
  disruptive.
- Its Modules selected the CR's ``spec.selector``, so KMM unloaded the modules the moment a node stopped matching.
  This operator's Modules select a label of their own (``names.module_selector_label``). A Module's selector is a
  granular map, so an apply keeps the keys the Go operator owns: a merge patch right after the apply removes them
  (``module_selector_patch``), so the Module never selects less than both. Before a Module selects the new label,
  every node that runs its modules carries it (``modules_held``), else KMM would unload them there.
- It set the gate label at once and removed every label at once. A node taken over while its device plugin stops
  keeps the Module selector label until no device-plugin pod is left (rows marked *takeover* in
  ``planner.nodes``).
- It ran one device-plugin DaemonSet, ``<name>-onload-device-plugin-ds`` (so did this operator's first release),
  and its first release (v3.0) selected that DaemonSet's pods by ``onload.amd.com/name`` alone. This operator runs
  one DaemonSet per revision: the old one is deleted, pods first, and the revision's DaemonSet is created once it
  is gone (``planner.reconcile``); only once the onload Module carries the record of the revisions, since before
  that the old DaemonSet may hold the only record of what the nodes run.
- It set no labels on its children: they are recognised by their owner reference (``handlers.owned_by_onload``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from onload_operator.actions import ApplyChild, PatchChild, PatchNode
from onload_operator.api.v1alpha1 import KernelMapping, Onload
from onload_operator.observed import NodeView
from onload_operator.planner.snapshot import ChildKey, JsonObject
from onload_operator.render import names
from onload_operator.render.children import revision_record
from onload_operator.render.common import Manifest


def adopted_deployment(name: str, children: Mapping[ChildKey, JsonObject]) -> dict[str, Any] | None:
    """The deployment record of children made by the Go operator (no annotation): read back from the Module and
    DaemonSet; None when they are not both there or do not say."""
    module = children.get(("Module", names.module_name(name)))
    daemonset = children.get(("DaemonSet", names.device_plugin_name(name)))
    if module is None or daemonset is None:
        return None
    container = ((module.get("spec") or {}).get("moduleLoader") or {}).get("container") or {}
    init = (((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}).get("initContainers") or []
    sfc = children.get(("Module", names.sfc_module_name(name)))
    sfc_container = ((sfc or {}).get("spec") or {}).get("moduleLoader", {}).get("container") or {}
    sfc_keys = {(m.get("regexp"), m.get("containerImage")) for m in sfc_container.get("kernelMappings") or []}
    mappings = []
    for kmm in container.get("kernelMappings") or []:
        mapping: dict[str, Any] = {"regexp": kmm.get("regexp"), "kernelModuleImage": kmm.get("containerImage")}
        if kmm.get("build"):
            mapping["build"] = kmm["build"]
        if (kmm.get("regexp"), kmm.get("containerImage")) in sfc_keys:
            mapping["sfc"] = {}
        mappings.append(mapping)
    if not container.get("version") or not init or not mappings:
        return None
    return {"version": container["version"], "userImage": init[0].get("image"), "kernelMappings": mappings}


def recorded_deployment(name: str, children: Mapping[ChildKey, JsonObject]) -> dict[str, Any] | None:
    """The ``onload.amd.com/deployed-onload`` record of this operator's first release: on the onload Module, else
    the DaemonSet, else the sfc Module; None without one."""
    for key in (
        ("Module", names.module_name(name)),
        ("DaemonSet", names.device_plugin_name(name)),
        ("Module", names.sfc_module_name(name)),
    ):
        text = (((children.get(key) or {}).get("metadata") or {}).get("annotations") or {}).get(
            names.DEPLOYED_ANNOTATION
        )
        try:
            record = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return None


def legacy_registry(onload: Onload, children: Mapping[ChildKey, JsonObject]) -> dict[str, dict[str, Any]]:
    """The revision the nodes run, as children made before revisions were recorded say: the CR with the recorded
    version, userImage and kernelMappings, under its version; {} when the children say nothing usable."""
    record = recorded_deployment(onload.metadata.name, children) or adopted_deployment(onload.metadata.name, children)
    if record is None:
        return {}
    try:
        mappings = [KernelMapping.model_validate(m) for m in record["kernelMappings"]]
        component = onload.spec.onload.model_copy(
            update={
                "version": str(record["version"]),
                "user_image": str(record["userImage"]),
                "kernel_mappings": mappings,
            }
        )
    except (KeyError, TypeError, ValidationError):
        return {}
    legacy = onload.model_copy(update={"spec": onload.spec.model_copy(update={"onload": component})})
    return {component.version: revision_record(legacy)}


def stale_selector_keys(desired: Manifest, live: JsonObject) -> list[str]:
    """Keys of a live Module's node selector that the rendered Module does not set (the Go operator's
    ``spec.selector``, kept by apply since it owns them)."""
    if desired.get("kind") != "Module":
        return []
    wanted = (desired.get("spec") or {}).get("selector") or {}
    return sorted(set((live.get("spec") or {}).get("selector") or {}) - set(wanted))


def module_selector_patch(apply: ApplyChild, live: JsonObject | None) -> PatchChild | None:
    """The merge patch that removes the stale selector keys of a live Module, run after its apply; None if none."""
    stale = stale_selector_keys(apply.manifest, live) if live is not None else []
    if not stale:
        return None
    name = apply.manifest["metadata"]["name"]
    return PatchChild(
        "Module", name, {"spec": {"selector": dict.fromkeys(stale)}}, "removing selector keys " + ", ".join(stale)
    )


def modules_held(namespace: str, name: str, nodes: Mapping[str, NodeView], patches: Sequence[PatchNode]) -> bool:
    """Whether this plan gives the Module selector label to nodes that already carry a KMM version label.

    Those nodes may run modules of Modules that select something else (made by the Go operator, or by an earlier
    version of this one, which selected ``spec.selector``): a Module must not select the new label before they
    carry it, else KMM unloads the modules there. Node patches run after the child writes, so the Module applies
    wait for the next reconcile, which sees the labels (a lagging view only delays them further).
    """
    selector_key = names.module_selector_label(namespace, name)
    version_keys = names.node_label_keys(namespace, name)[:2]
    return any(
        patch.labels.get(selector_key) == ""
        and patch.node in nodes
        and any(key in nodes[patch.node].labels for key in version_keys)
        for patch in patches
    )
