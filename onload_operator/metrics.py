"""Prometheus metrics of the operator, served on ``/metrics`` by ``prometheus_client``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

UPGRADE_STATES = {
    "done": "done",
    "in_progress": "inProgress",
    "failed": "failed",
    "skipped": "skipped",
    "pending": "pending",
}
"""Metric label → key of ``status.upgrade``."""


class OperatorMetrics:
    """The operator's metrics in their own registry (several operators can live in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "onload_operator_reconciles",
            "Reconciles of Onload CRs, by result (converged, changed, invalid, error)",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "onload_operator_reconcile_duration_seconds",
            "Duration of one reconcile of one Onload CR",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.errors = Counter(
            "onload_operator_reconcile_errors",
            "Failed reconciles, by error type",
            ["error"],
            registry=self.registry,
        )
        self.api_writes = Counter(
            "onload_operator_api_writes",
            "Write requests sent to the Kubernetes API, by verb and resource",
            ["verb", "resource"],
            registry=self.registry,
        )
        self.nodes = Gauge(
            "onload_operator_nodes",
            "Nodes of an Onload CR at each stage (selected, module_ready, device_plugin_ready)",
            ["namespace", "name", "stage"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "onload_operator_ready",
            "1 when the Onload CR is Ready, else 0",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.upgrade_nodes = Gauge(
            "onload_operator_upgrade_nodes",
            "Selected nodes of an Onload CR by rollout state (done, in_progress, failed, skipped, pending)",
            ["namespace", "name", "state"],
            registry=self.registry,
        )
        self.watch_last_heard = Gauge(
            "onload_operator_watch_last_heard_timestamp_seconds",
            "When each watch last heard from the API server (an event or a bookmark), as a Unix time",
            ["resource"],
            registry=self.registry,
        )

    def record_upgrade(self, namespace: str, name: str, upgrade: Mapping[str, Any]) -> None:
        """The counts of ``status.upgrade``."""
        for state, key in UPGRADE_STATES.items():
            self.upgrade_nodes.labels(namespace, name, state).set(int(upgrade.get(key) or 0))

    def record_nodes(self, namespace: str, name: str, counts: dict[str, int], ready: bool) -> None:
        for stage, value in counts.items():
            self.nodes.labels(namespace, name, stage).set(value)
        self.ready.labels(namespace, name).set(1 if ready else 0)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the per-CR series of a deleted CR."""
        for stage in ("selected", "module_ready", "device_plugin_ready"):
            with contextlib.suppress(KeyError):
                self.nodes.remove(namespace, name, stage)
        with contextlib.suppress(KeyError):
            self.ready.remove(namespace, name)
        for state in UPGRADE_STATES:
            with contextlib.suppress(KeyError):
                self.upgrade_nodes.remove(namespace, name, state)
