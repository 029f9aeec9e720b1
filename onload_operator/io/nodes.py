"""Node reads and patches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from onload_operator.actions import PatchNode
from onload_operator.io.client import MERGE_PATCH, Kube, json_of
from onload_operator.observed import NodeView, node_view

MAX_LABEL_NAME_LENGTH = 63
"""The longest name part of a label key."""


def node_patch_body(action: PatchNode) -> dict[str, Any]:
    """The merge patch of ``action``: labels and annotations; with taints, the whole list and the resourceVersion
    it was decided from (a precondition: the server answers 409 if the node changed since)."""
    metadata: dict[str, Any] = {}
    if action.labels:
        metadata["labels"] = dict(action.labels)
    if action.annotations:
        metadata["annotations"] = dict(action.annotations)
    body: dict[str, Any] = {"metadata": metadata}
    if action.taints is not None:
        body["spec"] = {"taints": [taint.as_dict() for taint in action.taints]}
        metadata["resourceVersion"] = action.resource_version
    return body


def patch_node(kube: Kube, action: PatchNode) -> None:
    """Merge-patch one node; a node that is gone needs no label (a conflict is raised)."""
    body = node_patch_body(action)
    try:
        kube.write(
            "patch",
            "nodes",
            lambda: kube.core.patch_node(action.node, body, _content_type=MERGE_PATCH, _preload_content=False),
        )
    except ApiException as error:
        if error.status != 404:
            raise


def nodes_with_labels(kube: Kube, keys: Sequence[str]) -> dict[str, NodeView]:
    """Fresh views of the nodes carrying any of ``keys`` (a watch cache may lag behind the last patches)."""
    found: dict[str, NodeView] = {}
    for key in keys:
        if len(key.rpartition("/")[2]) > MAX_LABEL_NAME_LENGTH:
            # No node can carry it (a CR refused as NameTooLong), and the API server refuses it as a selector.
            continue
        response: Any = kube.core.list_node(label_selector=key, _preload_content=False)
        for node in json_of(response).get("items") or []:
            view = node_view(node)
            found[view.name] = view
    return found
