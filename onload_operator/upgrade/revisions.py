"""Revisions: what a node runs, and their registry on the onload Module.

A revision is everything of a CR that reaches a node: ``spec.onload`` (version, images, kernel mappings, control
plane) and ``spec.devicePlugin``. Its id is the value of the node's KMM version labels and gate label, and the
``version`` of the Modules. The first revision of a version takes the version itself as its id, so node labels
read as in the Go operator; a later revision of the same version (a new userImage, say) gets
``<version>-<hash>``. The registry (annotation ``onload.amd.com/revisions`` on the onload Module) keeps the
revisions that nodes run or are moved to, so the device-plugin DaemonSet of a revision still on some nodes can be
rendered again after a restart, however the CR changed since.

A change that alters nothing on any node that runs the current revision (a kernel mapping for a kernel none of
them runs, say) updates that revision in place: nothing is rolled out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import re2
from pydantic import ValidationError

from onload_operator.api.v1alpha1 import DevicePluginSpec, Onload, OnloadComponentSpec

Record = dict[str, Any]
"""What one revision deploys (``render.children.revision_record``)."""
Registry = dict[str, Record]

HASH_LENGTH = 6
MAX_ID = 63


def version_of(record: Record) -> str:
    return str((record.get("onload") or {}).get("version") or "")


def uses_sfc(record: Record) -> bool:
    return any(m.get("sfc") is not None for m in (record.get("onload") or {}).get("kernelMappings") or [])


def onload_with(onload: Onload, record: Record) -> Onload | None:
    """The CR as it was when it asked for ``record``; None when the record no longer validates."""
    try:
        component = OnloadComponentSpec.model_validate(record["onload"])
        device_plugin = DevicePluginSpec.model_validate(record["devicePlugin"])
    except (KeyError, TypeError, ValidationError):
        return None
    spec = onload.spec.model_copy(update={"onload": component, "device_plugin": device_plugin})
    return onload.model_copy(update={"spec": spec})


def decode_registry(text: str | None) -> Registry:
    """The registry in an annotation value; entries that are not records are dropped."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict) and version_of(v)}


def _digest(record: Record) -> str:
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def kernel_mapping_for(record: Record, kernel: str) -> Record | None:
    """The first kernel mapping whose regexp matches ``kernel`` (an unanchored search, as KMM's Go regexp)."""
    for mapping in (record.get("onload") or {}).get("kernelMappings") or []:
        try:
            if re2.search(str(mapping.get("regexp") or ""), kernel.rstrip("+")):
                return dict(mapping)
        except re2.error:
            continue
    return None


def uses_sfc_on(record: Record, kernel: str) -> bool:
    """Whether ``record`` loads the sfc driver on a node with ``kernel``: the mapping KMM uses there asks for it
    (the sfc Module holds only those mappings, so KMM loads sfc on no other node)."""
    mapping = kernel_mapping_for(record, kernel)
    return mapping is not None and mapping.get("sfc") is not None


def _node_effect(record: Record, kernel: str) -> Record:
    """What ``record`` puts on a node with ``kernel``: all but the kernel mappings other kernels would use."""
    onload = {k: v for k, v in (record.get("onload") or {}).items() if k != "kernelMappings"}
    return {"onload": onload, "devicePlugin": record.get("devicePlugin"), "mapping": kernel_mapping_for(record, kernel)}


def same_on_nodes(old: Record, new: Record, kernels: Iterable[str]) -> bool:
    """Whether ``new`` puts exactly what ``old`` put on nodes with these kernels."""
    return all(_node_effect(old, kernel) == _node_effect(new, kernel) for kernel in kernels)


def new_revision_id(record: Record, registry: Mapping[str, Record]) -> str:
    version = version_of(record)
    if version not in registry:
        return version
    head = version[: MAX_ID - HASH_LENGTH - 1].rstrip("-_.")
    return f"{head}-{_digest(record)}"


def assign_target(
    desired: Record, registry: Mapping[str, Record], kernels_by_revision: Mapping[str, Iterable[str]]
) -> tuple[str, Registry]:
    """The revision id for ``desired`` and the registry that records it.

    ``kernels_by_revision`` lists, for each revision id, the kernels of the nodes that run it. An identical
    revision is reused (a rollback finds its earlier id); a revision of the same version that puts the same on
    every node running it is updated in place; anything else is a new revision.
    """
    updated = dict(registry)
    for revision, record in registry.items():
        if record == desired:
            return revision, updated
    for revision, record in sorted(registry.items()):
        if version_of(record) == version_of(desired) and same_on_nodes(
            record, desired, kernels_by_revision.get(revision, ())
        ):
            updated[revision] = desired
            return revision, updated
    revision = new_revision_id(desired, registry)
    updated[revision] = desired
    return revision, updated


def pruned(registry: Mapping[str, Record], keep: Iterable[str]) -> Registry:
    """The registry without the revisions no node runs or moves to any longer."""
    wanted = set(keep)
    return {revision: record for revision, record in registry.items() if revision in wanted}
