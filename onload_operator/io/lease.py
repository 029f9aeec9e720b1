"""Leader election with a ``coordination.k8s.io`` Lease: of several operator processes (a second replica, the old
pod during a rolling update), only the one holding the Lease acts.

A process takes the Lease when it is free, expired (not renewed for ``leaseDurationSeconds``) or already its own;
every write of the Lease carries the resourceVersion it was read at, so two processes never both take it. The
holder renews it well before it expires; one that cannot renew in time stops at once rather than act without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from onload_operator.io.client import json_of

log = logging.getLogger(__name__)

LEASE_NAME = "onload-operator"
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    identity: str
    duration_seconds: int = 15
    """Without a renewal for this long, the Lease is free for another process."""

    @property
    def renew_seconds(self) -> float:
        return self.duration_seconds / 3


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, MICRO_TIME).replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderLease:
    def __init__(self, api_client: client.ApiClient, settings: LeaseSettings) -> None:
        self.api: Any = client.CoordinationV1Api(api_client)
        self.settings = settings

    def _read(self) -> dict[str, Any] | None:
        try:
            return json_of(self.api.read_namespaced_lease(LEASE_NAME, self.settings.namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _spec(self, now: datetime, acquired: str | None) -> dict[str, Any]:
        stamp = now.strftime(MICRO_TIME)
        return {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": self.settings.duration_seconds,
            "acquireTime": acquired or stamp,
            "renewTime": stamp,
        }

    def holder(self, lease: dict[str, Any] | None, now: datetime) -> str | None:
        """Who holds the Lease now (None when it is free or expired)."""
        spec = (lease or {}).get("spec") or {}
        renewed = _time(spec.get("renewTime"))
        holder = spec.get("holderIdentity") or None
        duration = int(spec.get("leaseDurationSeconds") or self.settings.duration_seconds)
        if holder is None or renewed is None or renewed + timedelta(seconds=duration) < now:
            return None
        return str(holder)

    def try_acquire(self) -> str | None:
        """Take (or renew) the Lease; None when this process holds it, else who does."""
        now = datetime.now(UTC)
        lease = self._read()
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": self.settings.namespace},
        }
        try:
            if lease is None:
                body["spec"] = self._spec(now, None)
                self.api.create_namespaced_lease(self.settings.namespace, body, _preload_content=False)
                return None
            holder = self.holder(lease, now)
            if holder not in (None, self.settings.identity):
                return holder
            spec = lease.get("spec") or {}
            mine = holder == self.settings.identity
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            body["spec"] = self._spec(now, spec.get("acquireTime") if mine else None)
            if not mine:
                body["spec"]["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            self.api.replace_namespaced_lease(LEASE_NAME, self.settings.namespace, body, _preload_content=False)
        except ApiException as error:
            if error.status == 409:  # another process wrote it first
                return self.holder(self._read(), datetime.now(UTC)) or "another process"
            raise
        return None

    def release(self) -> None:
        """Give the Lease up at once (a clean shutdown), so a standby takes over without waiting for it to expire."""
        lease = self._read()
        if lease is None or self.holder(lease, datetime.now(UTC)) != self.settings.identity:
            return
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE_NAME,
                "namespace": self.settings.namespace,
                "resourceVersion": lease["metadata"]["resourceVersion"],
            },
            "spec": {**(lease.get("spec") or {}), "holderIdentity": None},
        }
        try:
            self.api.replace_namespaced_lease(LEASE_NAME, self.settings.namespace, body, _preload_content=False)
        except ApiException as error:
            log.warning("could not release the leader Lease: %s", error.reason)
