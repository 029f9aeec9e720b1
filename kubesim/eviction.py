"""policy/v1 Eviction of pods, honouring PodDisruptionBudgets as the eviction subresource does, and the budget
status that the disruption controller keeps; successful evictions are counted per pod for tests."""

from __future__ import annotations

import builtins
import math
from collections import Counter
from typing import Any, NamedTuple

from kubesim.errors import ApiError
from kubesim.lifecycle import DeleteOptions, Lifecycle
from kubesim.objects import is_pod_ready, now_rfc3339
from kubesim.patch import copy_object
from kubesim.resource_keys import BUDGETS, PODS
from kubesim.selectors import label_selector_matcher

JsonObject = dict[str, Any]


class EvictedPod(NamedTuple):
    """A pod that an eviction removed (or started to remove)."""

    namespace: str
    name: str
    uid: str


class Eviction(Lifecycle):
    """The pods/eviction subresource and PodDisruptionBudget status."""

    def __init__(self, *, history_limit: int, graceful_pod_deletion: bool) -> None:
        super().__init__(history_limit=history_limit, graceful_pod_deletion=graceful_pod_deletion)
        self.evictions: Counter[EvictedPod] = Counter()
        """Evictions that succeeded (not dry runs), per pod."""

    # --- eviction ------------------------------------------------------------------------------------

    def evict(self, namespace: str, name: str, delete_options: JsonObject | None, *, dry_run: bool = False) -> None:
        """policy/v1 Eviction: delete the pod unless a PodDisruptionBudget forbids it (429)."""
        pods = self._types[PODS]
        pod = self._existing(pods, namespace, name)
        options = DeleteOptions.from_body(delete_options, dry_run=dry_run)
        phase = (pod.get("status") or {}).get("phase")
        if "deletionTimestamp" not in pod["metadata"] and phase not in ("Pending", "Succeeded", "Failed"):
            self._check_budgets(pod, dry_run)
        self.delete_raw(pods, namespace, name, options)
        if not dry_run:
            self.evictions[EvictedPod(namespace, name, pod["metadata"]["uid"])] += 1

    def _check_budgets(self, pod: JsonObject, dry_run: bool) -> None:
        """429 when the PodDisruptionBudget covering the pod forbids its disruption now."""
        namespace = pod["metadata"]["namespace"]
        pdbs = self._types[BUDGETS]
        labels = pod["metadata"].get("labels") or {}
        budgets = [
            b
            for b in self.iter_raw(pdbs, namespace)
            if label_selector_matcher((b.get("spec") or {}).get("selector"))(labels)
        ]
        if len(budgets) > 1:
            raise ApiError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            )
        if budgets:
            self._check_budget(budgets[0], pod, dry_run)

    def _check_budget(self, budget: JsonObject, pod: JsonObject, dry_run: bool) -> None:
        status = self.budget_status(budget)
        if not dry_run:
            self.refresh_budget(budget, status)
        healthy, desired = status["currentHealthy"], status["desiredHealthy"]
        synced = status["conditions"][0]["reason"] != "SyncFailed"
        unhealthy_allowed = synced and not is_pod_ready(pod) and healthy >= desired
        if status["disruptionsAllowed"] <= 0 and not unhealthy_allowed:
            detail = (
                f"The disruption budget {budget['metadata']['name']} needs {desired} healthy pods and has "
                f"{healthy} currently"
                if synced
                else f"The disruption budget {budget['metadata']['name']} cannot be computed: "
                f"{status['conditions'][0]['message']}"
            )
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {"causes": [{"reason": "DisruptionBudget", "message": detail}]},
            )

    def _expected_scale(self, covered: builtins.list[JsonObject]) -> tuple[int, str]:
        """The replicas the pods' controllers want, or a reason it cannot be known (as the disruption controller
        reports it: bare pods and controllers without a scale subresource, such as DaemonSets, have none)."""
        scales: dict[str, int] = {}
        for pod in covered:
            controller = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
            if controller is None:
                return 0, f'found no controller ref for pod "{pod["metadata"]["name"]}"'
            if controller["uid"] in scales:
                continue
            owner = self._lookup_uid(controller["uid"])
            if owner is None or "scale" not in owner[0].subresources:
                return 0, f"{controller.get('kind')} {controller.get('name')} has no scale subresource"
            scales[controller["uid"]] = int((owner[1].get("spec") or {}).get("replicas") or 0)
        return sum(scales.values()), ""

    def budget_status(self, budget: JsonObject) -> JsonObject:
        """The status the disruption controller would give a PodDisruptionBudget now."""
        pods = self._types[PODS]
        spec = budget.get("spec") or {}
        matcher = label_selector_matcher(spec.get("selector"))
        covered = [
            p
            for p in self.iter_raw(pods, budget["metadata"]["namespace"])
            if matcher(p["metadata"].get("labels") or {})
        ]
        healthy = sum(1 for p in covered if "deletionTimestamp" not in p["metadata"] and is_pod_ready(p))
        min_available = spec.get("minAvailable")
        failure = ""
        if isinstance(min_available, int):
            expected, desired = len(covered), min_available
        else:
            expected, failure = self._expected_scale(covered)
            if "maxUnavailable" in spec:
                desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
            else:
                desired = _scaled(min_available, expected) if min_available is not None else expected
        allowed = 0 if failure else max(0, healthy - desired)
        reason = "SyncFailed" if failure else "SufficientPods" if allowed > 0 else "InsufficientPods"
        previous: JsonObject = next(
            (c for c in (budget.get("status") or {}).get("conditions") or [] if c.get("type") == "DisruptionAllowed"),
            {},
        )
        condition_status = "True" if allowed > 0 else "False"
        return {
            "observedGeneration": budget["metadata"].get("generation", 1),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": condition_status,
                    "reason": reason,
                    "message": failure,
                    "observedGeneration": budget["metadata"].get("generation", 1),
                    "lastTransitionTime": previous.get("lastTransitionTime", now_rfc3339())
                    if previous.get("status") == condition_status
                    else now_rfc3339(),
                }
            ],
        }

    def refresh_budget(self, budget: JsonObject, status: JsonObject | None = None) -> None:
        """Write a PodDisruptionBudget's current status if it changed."""
        status = status if status is not None else self.budget_status(budget)
        if status != budget.get("status"):
            self._store_update(self._types[BUDGETS], budget, {**copy_object(budget), "status": status})


def _scaled(value: int | str, total: int) -> int:
    """An int-or-percent of ``total``, rounded up as the disruption controller does."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)
