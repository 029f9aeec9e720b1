"""Builders of upgrade-machine inputs for the unit tests: one CR ``ns/onl`` moving nodes from ``v1`` to ``v2``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from onload_operator.actions import Action, ObjectRef, PatchNode
from onload_operator.api.upgrade import UpgradePolicy
from onload_operator.observed import NodeView, PodView, Taint
from onload_operator.render import names
from onload_operator.upgrade import RolloutInput, RolloutPlan, plan_rollout
from onload_operator.upgrade.state import NodeUpgrade, Step, decode, format_time

NAMESPACE, NAME = "ns", "onl"
ONLOAD_KEY, SFC_KEY, GATE_KEY, SELECTOR_KEY = names.node_label_keys(NAMESPACE, NAME)
ONLOAD_READY = names.kmm_version_ready_label(NAMESPACE, names.module_name(NAME))
SFC_READY = names.kmm_version_ready_label(NAMESPACE, names.sfc_module_name(NAME))
TAINT = Taint(names.UPGRADE_TAINT, "NoSchedule", f"{NAMESPACE}.{NAME}")
NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
OWNER = f"{NAMESPACE}/{NAME}"


def record(version: str, *, sfc: bool = False, image: str = "user:1") -> dict[str, Any]:
    mapping: dict[str, Any] = {"regexp": "^.*$", "kernelModuleImage": f"kmod:{version}"}
    if sfc:
        mapping["sfc"] = {}
    return {
        "onload": {"version": version, "userImage": image, "kernelMappings": [mapping]},
        "devicePlugin": {"maxPodsPerNode": 100},
    }


REVISIONS = {"v1": record("v1"), "v2": record("v2")}


def running(revision: str, **extra: str) -> dict[str, str]:
    """Labels of a node that runs ``revision`` with a ready device plugin."""
    return {
        "role": "onload",
        SELECTOR_KEY: "",
        ONLOAD_KEY: revision,
        ONLOAD_READY: revision,
        GATE_KEY: revision,
        **extra,
    }


def node(
    name: str,
    labels: Mapping[str, str] | None = None,
    state: NodeUpgrade | None = None,
    *,
    tainted: bool | None = None,
    ready: bool = True,
    unschedulable: bool = False,
) -> NodeView:
    annotations = {names.UPGRADE_ANNOTATION: state.encode()} if state is not None else {}
    taint = (state is not None and state.step != Step.SKIPPED) if tainted is None else tainted
    return NodeView(
        name=name,
        labels=dict(running("v1") if labels is None else labels),
        annotations=annotations,
        taints=(TAINT,) if taint else (),
        ready=ready,
        unschedulable=unschedulable,
        resource_version="7",
    )


def state(step: Step, *, seconds_ago: float = 0, target: str = "v2", **fields: Any) -> NodeUpgrade:
    return NodeUpgrade(OWNER, "v1", target, step, format_time(NOW - timedelta(seconds=seconds_ago)), **fields)


def pod(name: str, node_name: str, **fields: Any) -> PodView:
    return PodView("apps", name, f"uid-{name}", node_name, **fields)


def plugin_pod(node_name: str, revision: str = "v1", **fields: Any) -> PodView:
    labels = {names.NAME_LABEL: names.device_plugin_revision_name(NAME, revision)}
    return PodView(NAMESPACE, f"dp-{revision}-{node_name}", f"uid-dp-{node_name}", node_name, labels=labels, **fields)


def plan(
    nodes: Sequence[NodeView],
    *,
    pods: Mapping[str, Sequence[PodView]] | None = None,
    policy: UpgradePolicy | None = None,
    target: str = "v2",
    revisions: Mapping[str, Any] | None = None,
    selected: Sequence[str] | None = None,
    blocks: Mapping[str, str] | None = None,
    previous: Mapping[str, Any] | None = None,
    now: datetime = NOW,
) -> RolloutPlan:
    return plan_rollout(
        RolloutInput(
            namespace=NAMESPACE,
            name=NAME,
            onload=ObjectRef("onload.amd.com/v1alpha1", "Onload", NAME, NAMESPACE, "uid-cr"),
            target=target,
            revisions=dict(REVISIONS if revisions is None else revisions),
            policy=policy or UpgradePolicy(),
            nodes={n.name: n for n in nodes},
            selected=frozenset(selected if selected is not None else [n.name for n in nodes]),
            pods=dict(pods or {}),
            now=now,
            eviction_blocks=dict(blocks or {}),
            previous=previous,
        )
    )


def node_patches(actions: Sequence[Action]) -> dict[str, list[PatchNode]]:
    patches: dict[str, list[PatchNode]] = {}
    for action in actions:
        if isinstance(action, PatchNode):
            patches.setdefault(action.node, []).append(action)
    return patches


def written_state(patch: PatchNode) -> NodeUpgrade | None:
    text = patch.annotations.get(names.UPGRADE_ANNOTATION)
    return None if text is None else decode(text)
