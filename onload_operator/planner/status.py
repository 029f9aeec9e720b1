"""The status reducer: from what the operator observed to the CR's ``status``: conditions, counts and version.

Conditions follow metav1.Condition: ``lastTransitionTime`` changes only when a condition's status flips, and
every condition carries the generation it was computed from, so an unchanged cluster yields an identical status
(and no write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onload_operator.planner.checks import Problem
from onload_operator.upgrade.summary import ConditionValue

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"

ALL_NODES_READY = "AllNodesReady"
NODES_NOT_READY = "NodesNotReady"
"""The children or the node labels are still being written."""
WAITING_FOR_KMM = "WaitingForKmm"
"""KMM does not report the modules loaded on some selected nodes (named in the message)."""
WAITING_FOR_DEVICE_PLUGIN = "WaitingForDevicePlugin"
"""The modules are loaded, but the device plugin is not ready on every selected node."""
NAMED_NODES = 3
"""How many nodes a message names before it counts the rest."""
NO_NODES_SELECTED = "NoNodesSelected"
ROLLING_OUT = "RollingOut"
DEVICE_PLUGIN_RESTART_PENDING = "DevicePluginRestartPending"
RECREATING = "Recreating"
APPLYING = "Applying"
COMPLETE = "Complete"
AS_EXPECTED = "AsExpected"
RECONCILE_ERROR = "ReconcileError"
"""A pass failed for a reason of its own (a server error, a connection lost)."""
API_REFUSED = "ApiRefused"
"""The API server refused a write: the message is the server's, with the object and the fields."""
KMM_MISSING = "KmmMissing"
"""The cluster serves no KMM Module kind."""
UPGRADING = "Upgrading"


@dataclass(frozen=True)
class Holdup:
    """What keeps the rollout from finishing although nothing is wrong: a Progressing reason and its message."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    """Everything the status is computed from, gathered by the planner in one reconcile."""

    generation: int | None
    problems: Sequence[Problem] = ()
    selected: int = 0
    module_ready: int = 0
    device_plugin_ready: int = 0
    children_present: bool = True
    nodes_labelled: bool = True
    version: str | None = None
    holdup: Holdup | None = None
    """A child being created again (``Recreating``), a rollout under way (``Upgrading``), or children written and
    not yet observed to take effect (``Applying``): the generation is not complete."""
    outdated_device_plugin_pods: int = 0
    errors: Sequence[Problem] = field(default_factory=tuple)
    """The failures of the passes since the last success, when they are to be reported (Degraded)."""
    upgrade: Mapping[str, Any] | None = None
    """``status.upgrade``, once a rollout ran."""
    upgrade_conditions: Sequence[ConditionValue] = ()
    rollout_pending: bool = False
    """Selected nodes still run another revision, or are in the upgrade's hands: not Ready yet."""
    rollout_waiting: bool = False
    """Nodes wait in a step that watches pods, which are not watched: look again soon."""
    modules_pending: Sequence[str] = ()
    plugins_pending: Sequence[str] = ()
    """Selected nodes with the gate label but no Ready device-plugin pod, when the pods were read."""
    """Selected nodes where KMM does not report the modules loaded."""


def set_condition(
    previous: Sequence[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> dict[str, Any]:
    """A condition, keeping the previous ``lastTransitionTime`` when its status did not change."""
    old = condition_of({"conditions": previous}, type_)
    since = old["lastTransitionTime"] if old.get("status") == status and old.get("lastTransitionTime") else now
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _counts_message(obs: Observation) -> str:
    return (
        f"{obs.module_ready}/{obs.selected} selected nodes have the Onload module loaded, "
        f"{obs.device_plugin_ready}/{obs.selected} a ready device plugin"
    )


def _ready(obs: Observation) -> tuple[str, str, str]:
    if obs.problems:
        return "False", obs.problems[0].reason, "; ".join(p.message for p in obs.problems)
    if obs.selected == 0:
        return "False", NO_NODES_SELECTED, "spec.selector matches no node"
    if obs.rollout_pending:
        return "False", UPGRADING, f"a rollout is under way ({_counts_message(obs)}); see the Upgrading condition"
    done = (
        obs.children_present
        and obs.nodes_labelled
        and obs.module_ready >= obs.selected
        and obs.device_plugin_ready >= obs.selected
    )
    if done:
        return "True", ALL_NODES_READY, f"Onload {obs.version} runs on all {obs.selected} selected nodes"
    if obs.modules_pending:
        nodes = named_nodes(obs.modules_pending)
        return "False", WAITING_FOR_KMM, f"KMM has not reported the modules loaded on {nodes} ({_counts_message(obs)})"
    if obs.device_plugin_ready < obs.selected and obs.children_present and obs.nodes_labelled:
        waiting = obs.selected - obs.device_plugin_ready
        where = (
            named_nodes(obs.plugins_pending)
            if obs.plugins_pending
            else f"{waiting} selected node{'s' if waiting != 1 else ''}"
        )
        return (
            "False",
            WAITING_FOR_DEVICE_PLUGIN,
            f"the modules are loaded, but the device plugin is not ready on {where} ({_counts_message(obs)}); "
            "see its DaemonSet's pods",
        )
    return "False", NODES_NOT_READY, _counts_message(obs)


def named_nodes(nodes: Sequence[str]) -> str:
    """The first few nodes by name, then how many more."""
    shown = ", ".join(nodes[:NAMED_NODES])
    return shown if len(nodes) <= NAMED_NODES else f"{shown} and {len(nodes) - NAMED_NODES} more"


def _progressing(obs: Observation, ready: str) -> tuple[str, str, str]:
    if obs.problems:
        return "False", obs.problems[0].reason, "nothing is changed until the problem is fixed"
    if obs.holdup is not None:
        return "True", obs.holdup.reason, obs.holdup.message
    if obs.selected and ready != "True":
        return "True", ROLLING_OUT, _counts_message(obs)
    if obs.outdated_device_plugin_pods:
        return (
            "True",
            DEVICE_PLUGIN_RESTART_PENDING,
            f"{obs.outdated_device_plugin_pods} device plugin pods run an older template (OnDelete updates); "
            "they take the new settings when they restart",
        )
    return "False", COMPLETE, "nothing left to do"


def _degraded(obs: Observation) -> tuple[str, str, str]:
    if obs.problems:
        return "True", obs.problems[0].reason, "; ".join(p.message for p in obs.problems)
    if obs.errors:
        return "True", obs.errors[-1].reason, "; ".join(error.message for error in obs.errors)
    return "False", AS_EXPECTED, "no problem found"


def compute_status(obs: Observation, previous: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The whole ``status`` of the CR for an observation; ``previous`` is the current status, if any."""
    previous_conditions = list((previous or {}).get("conditions") or [])
    ready = _ready(obs)
    conditions = [
        set_condition(previous_conditions, READY, *ready, obs.generation, now),
        set_condition(previous_conditions, PROGRESSING, *_progressing(obs, ready[0]), obs.generation, now),
        set_condition(previous_conditions, DEGRADED, *_degraded(obs), obs.generation, now),
        *(
            set_condition(previous_conditions, c.type, c.status, c.reason, c.message, obs.generation, now)
            for c in obs.upgrade_conditions
        ),
    ]
    status: dict[str, Any] = {
        "conditions": conditions,
        "nodes": {
            "selected": obs.selected,
            "moduleReady": obs.module_ready,
            "devicePluginReady": obs.device_plugin_ready,
        },
    }
    if obs.generation is not None:
        status["observedGeneration"] = obs.generation
    # None removes a version no node runs any longer (the status is merge-patched).
    status["version"] = obs.version
    if obs.upgrade is not None:
        status["upgrade"] = dict(obs.upgrade)
    return status


def condition_of(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition ``type_`` of a status, or {} when it has none."""
    return next((dict(c) for c in (status or {}).get("conditions") or [] if c.get("type") == type_), {})
