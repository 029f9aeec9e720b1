"""Every child object of an Onload CR, annotated so that the planner can compare them with the live objects."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from onload_operator.api.v1alpha1 import Onload
from onload_operator.render import names
from onload_operator.render.common import Manifest
from onload_operator.render.daemonset import device_plugin_daemonset
from onload_operator.render.modules import onload_module, sfc_module


def deployed_record(onload: Onload) -> dict[str, Any]:
    """The fields that only the node-by-node upgrade may change on running nodes."""
    component = onload.spec.onload
    return {
        "version": component.version,
        "userImage": component.user_image,
        "kernelMappings": [m.model_dump(by_alias=True, exclude_none=True) for m in component.kernel_mappings],
    }


def manifest_hash(manifest: Manifest) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _annotated(manifest: Manifest, record: str) -> Manifest:
    metadata = manifest["metadata"]
    metadata["annotations"] = {names.DEPLOYED_ANNOTATION: record}
    metadata["annotations"][names.APPLIED_HASH_ANNOTATION] = manifest_hash(manifest)
    return manifest


def render_children(onload: Onload, device_plugin_image: str) -> list[Manifest]:
    """The Modules and the DaemonSet for ``onload``, in the order they are applied."""
    record = json.dumps(deployed_record(onload), sort_keys=True, separators=(",", ":"))
    children = [onload_module(onload)]
    sfc = sfc_module(onload)
    if sfc is not None:
        children.append(sfc)
    children.append(device_plugin_daemonset(onload, device_plugin_image))
    return [_annotated(child, record) for child in children]
