"""Which Onload the nodes run, as opposed to which one the CR asks for.

``spec.onload.version``, ``userImage`` and ``kernelMappings`` may only change on a running node through the
node-by-node upgrade (evict, unload, load, restart the device plugin). Every child records the values it was
rendered from (annotation ``onload.amd.com/deployed-onload``); while nodes run Onload, the children keep being
rendered from that record and the CR reports ``Progressing=True, reason=UpgradePending``. Everything else in the
CR is applied at once. When no node runs Onload yet (no node carries the KMM version label), there is nothing to
disrupt and the CR's values are taken directly. Children without a record are read back (``planner.takeover``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from onload_operator.api.v1alpha1 import KernelMapping, Onload
from onload_operator.planner.snapshot import ChildKey, JsonObject
from onload_operator.planner.status import UPGRADE_PENDING, Holdup
from onload_operator.planner.takeover import adopted_deployment
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
) -> tuple[Onload, Holdup | None]:
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
    return deployed, Holdup(
        UPGRADE_PENDING,
        f"{', '.join(changed)} changed (version {record.get('version')} -> {desired['version']}): nodes running Onload "
        f"keep version {record.get('version')}; replacing it needs the node-by-node upgrade, which this operator "
        "version does not perform, so nothing disruptive is changed",
    )
