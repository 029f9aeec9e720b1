"""What the operator observes of core objects, reduced to the fields its decisions read.

The planner and the upgrade machine never see raw API objects: the I/O layer turns Nodes and Pods into these
values, so that pure code is table-tested with plain constructors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onload_operator.render.names import RESOURCE_NAME


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""

    def as_dict(self) -> dict[str, str]:
        taint = {"key": self.key, "effect": self.effect}
        if self.value:
            taint["value"] = self.value
        return taint


@dataclass(frozen=True)
class NodeView:
    """A Node as the operator decides on it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    """``spec.unschedulable`` (a cordon)."""
    ready: bool = True
    """The node's ``Ready`` condition is True."""
    kernel_version: str = ""
    resource_version: str = ""

    @property
    def in_service(self) -> bool:
        """Whether pods can be scheduled and run here: not cordoned and Ready."""
        return self.ready and not self.unschedulable


@dataclass(frozen=True)
class PodView:
    """A Pod on a node, as the upgrade's eviction step needs it."""

    namespace: str
    name: str
    uid: str
    node: str
    requests_onload: bool = False
    """Whether any container (init containers included) requests or limits ``amd.com/onload``."""
    terminating: bool = False
    ready: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Whether a Node's or a Pod's ``Ready`` condition is True."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_view(node: Mapping[str, Any]) -> NodeView:
    """A NodeView of a Node object (a dict as the API serves it)."""
    metadata = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    return NodeView(
        name=str(metadata.get("name") or ""),
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        taints=tuple(
            Taint(str(t.get("key") or ""), str(t.get("effect") or ""), str(t.get("value") or ""))
            for t in spec.get("taints") or []
        ),
        unschedulable=bool(spec.get("unschedulable")),
        ready=is_ready(node),
        kernel_version=str((status.get("nodeInfo") or {}).get("kernelVersion") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def _requests_onload(container: Mapping[str, Any]) -> bool:
    resources = container.get("resources") or {}
    return any(RESOURCE_NAME in (resources.get(kind) or {}) for kind in ("requests", "limits"))


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """A PodView of a Pod object (a dict as the API serves it)."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return PodView(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        node=str(spec.get("nodeName") or ""),
        requests_onload=any(_requests_onload(c) for c in containers),
        terminating=bool(metadata.get("deletionTimestamp")),
        ready=is_ready(pod),
        labels=dict(metadata.get("labels") or {}),
    )
