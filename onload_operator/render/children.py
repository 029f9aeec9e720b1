"""Every child object of an Onload CR, annotated so that the planner can compare them with the live objects.

Children are rendered per revision (see upgrade.revisions): the Modules from the revision the nodes are moved
to, one device-plugin DaemonSet for each revision that nodes run, so a device-plugin pod that comes back on a node
not upgraded yet brings back the user space of that node's modules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onload_operator.api.v1alpha1 import Onload
from onload_operator.render import names
from onload_operator.render.common import Manifest
from onload_operator.render.daemonset import device_plugin_daemonset
from onload_operator.render.modules import onload_module, sfc_module


def revision_record(onload: Onload) -> dict[str, Any]:
    """What a revision of the CR puts on a node: ``spec.onload`` and ``spec.devicePlugin``."""
    spec = onload.spec
    return {
        "onload": spec.onload.model_dump(mode="json", by_alias=True, exclude_none=True),
        "devicePlugin": spec.device_plugin.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def encode_registry(registry: Mapping[str, Mapping[str, Any]]) -> str:
    return json.dumps(dict(registry), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Deployment:
    """What to render for one CR."""

    target: Onload
    """The CR as the revision the nodes are moved to asks for it."""
    revision: str
    """Id of that revision: the Modules' version."""
    registry: str
    """The revisions' registry (JSON), kept on the onload Module."""
    device_plugins: Mapping[str, Onload] = field(default_factory=dict)
    """Revision → the CR as that revision asks for it, for every device-plugin DaemonSet (the target's included)."""
    sfc: tuple[str, Onload] | None = None
    """Revision and CR of the sfc Module, when one is needed."""

    @classmethod
    def of(cls, onload: Onload) -> Deployment:
        """The deployment of a CR that no node runs yet: one revision, named after its version."""
        revision = onload.spec.onload.version
        return cls(
            target=onload,
            revision=revision,
            registry=encode_registry({revision: revision_record(onload)}),
            device_plugins={revision: onload},
            sfc=(revision, onload) if onload.spec.uses_sfc else None,
        )


def manifest_hash(manifest: Manifest) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _annotated(manifest: Manifest) -> Manifest:
    metadata = manifest["metadata"]
    annotations = metadata.setdefault("annotations", {})
    annotations[names.APPLIED_HASH_ANNOTATION] = manifest_hash(manifest)
    return manifest


def render_children(
    deployment: Deployment, device_plugin_image: str, *, module_tolerations: bool = True
) -> list[Manifest]:
    """The Modules and the DaemonSets, in the order they are applied; the Modules carry tolerations only where the
    installed KMM knows the field (``module_tolerations``)."""
    children = [onload_module(deployment.target, deployment.revision, deployment.registry, module_tolerations)]
    if deployment.sfc is not None:
        sfc_revision, sfc_onload = deployment.sfc
        children.append(sfc_module(sfc_onload, sfc_revision, module_tolerations))
    children.extend(
        device_plugin_daemonset(onload, revision, device_plugin_image)
        for revision, onload in sorted(deployment.device_plugins.items())
    )
    return [_annotated(child) for child in children]
