"""Settings of one operator process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorConfig:
    device_plugin_image: str
    """Image of the device-plugin and onload-worker containers (``DEVICE_PLUGIN_IMG``)."""
    kubeconfig: str | None = None
    """None: the in-cluster service account, else the current context of ``KUBECONFIG``/~/.kube/config."""
    namespaces: tuple[str, ...] = ()
    """Namespaces whose Onload CRs are served; empty for all namespaces."""
    metrics_port: int | None = 8080
    """Port of ``/metrics`` (0 picks a free port, None disables it)."""
    metrics_address: str = "0.0.0.0"
    liveness_endpoint: str | None = "http://0.0.0.0:8081/healthz"
    resync_seconds: float = 300.0
    """Each CR is reconciled at least this often, even when no event arrives."""
    recheck_seconds: float = 2.0
    """While nodes wait in an upgrade step on pods (which are not watched), the CR is reconciled this often."""
    min_interval_seconds: float = 0.2
    """Reconciles of one CR are at least this far apart: bursts of events are handled together."""
    max_backoff_seconds: float = 30.0
    watch_stuck_seconds: float = 900.0
    """The liveness probe fails when a watch has heard nothing (not even a bookmark) for this long while no request
    is being retried: a stuck stream, which a restart cures."""
    leader_election_namespace: str | None = None
    """Namespace of the leader Lease (``onload-operator``); None runs without leader election (one process only)."""
    leader_lease_seconds: int = 15
    """A leader that has not renewed the Lease for this long loses it to a standby."""
    degraded_after_failures: int = 3
    """Consecutive failed reconciles after which the CR reports Degraded=True, reason ReconcileError."""
