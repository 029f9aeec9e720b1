"""Which Onload the nodes run, as opposed to which one the CR asks for.

``spec.onload.version``, ``userImage`` and ``kernelMappings`` may only change on a running node through the
node-by-node upgrade (evict, unload, load, restart the device plugin). Every child records the values it was
rendered from (annotation ``onload.amd.com/deployed-onload``); while nodes run Onload, the children keep being
rendered from that record and the CR reports ``Progressing=True, reason=UpgradePending``. Everything else in the
CR is applied at once. When no node runs Onload yet (no node carries the KMM version label), there is nothing to
disrupt and the CR's values are taken directly. Children made by the Go operator carry no record: it is read back
from their Module and DaemonSet, so that taking over a cluster mid-way changes nothing disruptive either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from onload_operator.api.v1alpha1 import KernelMapping, Onload
from onload_operator.planner.snapshot import ChildKey, JsonObject
from onload_operator.render import names
from onload_operator.render.children import deployed_record


def recorded_deployment(name: str, children: Mapping[ChildKey, JsonObject]) -> dict[str, Any] | None:
    """The record of the onload Module, else of the DaemonSet, else of the sfc Module; None without children."""
    for key in (
        ("Module", names.module_name(name)),
        ("DaemonSet", names.device_plugin_name(name)),
        ("Module", names.sfc_module_name(name)),
    ):
        child = children.get(key)
        if child is None:
            continue
        text = ((child.get("metadata") or {}).get("annotations") or {}).get(names.DEPLOYED_ANNOTATION)
        if not text:
            continue
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return None


def adopted_deployment(name: str, children: Mapping[ChildKey, JsonObject]) -> dict[str, Any] | None:
    """The record of children made by the Go operator (no annotation): read back from the Module and DaemonSet."""
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


def with_record(onload: Onload, record: Mapping[str, Any]) -> Onload | None:
    """``onload`` with the recorded version, userImage and kernelMappings; None when the record is unusable."""
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
        return None
    return onload.model_copy(update={"spec": onload.spec.model_copy(update={"onload": component})})


def _differences(desired: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[str]:
    fields = {"version": "version", "userImage": "userImage", "kernelMappings": "kernelMappings"}
    return [f"spec.onload.{path}" for key, path in fields.items() if desired.get(key) != recorded.get(key)]


def effective_onload(
    onload: Onload, children: Mapping[ChildKey, JsonObject], onload_running: bool
) -> tuple[Onload, str | None]:
    """The Onload to render children from, and why it differs from the CR (None when it does not)."""
    name = onload.metadata.name
    record = recorded_deployment(name, children) or adopted_deployment(name, children)
    if record is None or not onload_running:
        return onload, None
    desired = deployed_record(onload)
    changed = _differences(desired, record)
    if not changed:
        return onload, None
    deployed = with_record(onload, record)
    if deployed is None:
        return onload, None
    return deployed, (
        f"{', '.join(changed)} changed (version {record.get('version')} -> {desired['version']}): nodes running Onload "
        f"keep version {record.get('version')}; replacing it needs the node-by-node upgrade, which this operator "
        "version does not perform, so nothing disruptive is changed"
    )
