"""The upgrade's part of the ``Onload`` API: the policy (``spec.upgrade``) and the progress (``status.upgrade``)."""

from __future__ import annotations

from typing import Literal

import re2
from pydantic import Field, model_validator

from onload_operator.api.base import ApiModel

EvictionTimeoutAction = Literal["Fail", "SkipNode", "Force"]


class UpgradePolicy(ApiModel):
    """Policy of the node-by-node upgrade."""

    max_parallel: int = Field(default=1, ge=1, le=1000, description="Nodes upgraded at the same time (default 1).")
    max_unavailable: int | str = Field(
        default=1,
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",
                    "message": "must be an integer of at least 1 or a percentage from 1% to 100%",
                }
            ],
        },
        description="Most selected nodes out of service at once, as a number or a percentage of the selected nodes "
        "(rounded up), counting nodes under upgrade, failed nodes and nodes that were already cordoned or NotReady "
        "(default 1).",
    )
    paused: bool = Field(
        default=False,
        description="Stop the rollout at the next step boundary, keeping every node's state; false resumes it "
        "where it stopped. Timeouts do not run while paused.",
    )
    eviction_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="How long the pods using Onload on a node may take to be evicted (default 300).",
    )
    on_eviction_timeout: EvictionTimeoutAction = Field(
        default="Fail",
        description="What happens when evictions time out: `Fail` (the node fails and keeps the upgrade taint), "
        "`SkipNode` (the node is restored to the version it ran and skipped) or `Force` (the pods are deleted "
        "without regard to PodDisruptionBudgets). Default Fail.",
    )
    module_timeout_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="How long KMM may take to report the new kernel modules loaded on a node before the node "
        "fails (default 600).",
    )
    device_plugin_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="How long the device plugin may take to stop, and to become Ready again, on a node before "
        "the node fails (default 300).",
    )
    max_failures: int = Field(
        default=1,
        ge=1,
        le=10000,
        description="The rollout stops taking new nodes once this many nodes failed, so that a bad version does "
        "not spread (default 1).",
    )

    @model_validator(mode="after")
    def _check_max_unavailable(self) -> UpgradePolicy:
        value = self.max_unavailable
        if isinstance(value, int):
            if value < 1:
                raise ValueError("maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%")
        elif re2.fullmatch(r"(100|[1-9][0-9]?)%", value) is None:
            raise ValueError("maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%")
        return self


UpgradePhase = Literal["Progressing", "Paused", "Blocked", "Failed", "Complete"]


class NodeUpgradeStatus(ApiModel):
    """One node in the hands of the upgrade."""

    name: str = Field(description="Name of the node.")
    step: str = Field(
        description="Current step: StopDevicePlugin, EvictPods, LoadModules, StartDevicePlugin or Failed."
    )
    since: str = Field(description="When the node entered the step (RFC 3339).")
    attempts: int = Field(default=1, ge=1, description="Attempts at upgrading this node to the target.")
    reason: str = Field(default="", description="What the step waits for, or why it failed.")


class UpgradeStatus(ApiModel):
    """Progress of the node-by-node rollout of what the nodes run."""

    from_: str = Field(default="", alias="from", description="Versions the nodes ran when the rollout started.")
    to: str = Field(default="", description="Version being rolled out.")
    phase: UpgradePhase = Field(default="Complete", description="Progressing, Paused, Blocked, Failed or Complete.")
    progress: str = Field(default="0/0", description="Upgraded nodes out of the selected nodes, as `done/total`.")
    total: int = Field(default=0, ge=0, description="Selected nodes.")
    done: int = Field(default=0, ge=0, description="Selected nodes that run the version being rolled out.")
    in_progress: int = Field(default=0, ge=0, description="Nodes being upgraded now.")
    failed: int = Field(default=0, ge=0, description="Nodes whose upgrade failed; they keep the upgrade taint.")
    skipped: int = Field(default=0, ge=0, description="Nodes skipped after an eviction timeout (SkipNode).")
    pending: int = Field(default=0, ge=0, description="Nodes waiting for their turn.")
    nodes: list[NodeUpgradeStatus] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="The nodes in progress or failed, with their step.",
    )
