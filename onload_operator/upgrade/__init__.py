"""The node-by-node upgrade: a pure state machine over the nodes' observed state (see machine)."""

from onload_operator.upgrade.machine import RolloutInput, RolloutPlan, needs_pods, plan_rollout

__all__ = ["RolloutInput", "RolloutPlan", "needs_pods", "plan_rollout"]
