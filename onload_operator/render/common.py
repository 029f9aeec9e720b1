"""Parts shared by every child manifest."""

from __future__ import annotations

from typing import Any

from onload_operator.api.v1alpha1 import API_VERSION, KIND, Onload
from onload_operator.render import names

Manifest = dict[str, Any]
"""A Kubernetes object as the API serves it or as the operator writes it."""


def owner_reference(onload: Onload) -> dict[str, Any]:
    """The controller reference that makes garbage collection delete a child with its CR."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": onload.metadata.name,
        "uid": onload.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def upgrade_tolerations() -> list[dict[str, str]]:
    """Tolerate the taint of the operator's own node-by-node upgrade, so its children keep running there."""
    return [{"key": names.UPGRADE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
