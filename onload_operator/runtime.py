"""Running the operator: in the foreground (``onload-operator``), or in a thread (sandbox, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from onload_operator.config import OperatorConfig
from onload_operator.handlers import REGISTRY, WATCHED
from onload_operator.health import ApiHealth
from onload_operator.io.client import Kube, load_api_client
from onload_operator.io.executor import Executor
from onload_operator.io.lease import LEASE_NAME, LeaderLease, LeaseSettings
from onload_operator.metrics import OperatorMetrics
from onload_operator.reconciler import OperatorContext

log = logging.getLogger(__name__)

LEASE_RETRY_SECONDS = 1.0
"""How often a standby tries to take the Lease."""
LOST_LEASE_EXIT = 3


def build_context(config: OperatorConfig) -> OperatorContext:
    metrics = OperatorMetrics()
    kube = Kube(load_api_client(config.kubeconfig), metrics)
    executor = Executor(kube, os.environ.get("POD_NAME") or socket.gethostname())
    health = ApiHealth(WATCHED, config.watch_stuck_seconds)
    health.on_heard = lambda resource, moment: metrics.watch_last_heard.labels(resource).set(moment)
    return OperatorContext(config=config, kube=kube, executor=executor, metrics=metrics, health=health)


async def run_operator(
    config: OperatorConfig,
    *,
    context: OperatorContext | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run until ``stop_flag`` is set (or forever); with leader election, only once this process holds the Lease."""
    context = context or build_context(config)
    lease = await _lead(config, context)
    keeper = asyncio.create_task(_keep(lease)) if lease is not None else None
    try:
        await kopf.operator(
            registry=REGISTRY,
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            liveness_endpoint=config.liveness_endpoint,
            memo=kopf.Memo(context=context),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if keeper is not None:
            keeper.cancel()
        if lease is not None:
            await asyncio.to_thread(lease.release)
        context.close()


async def _lead(config: OperatorConfig, context: OperatorContext) -> LeaderLease | None:
    """Wait until this process holds the leader Lease (None without leader election)."""
    if config.leader_election_namespace is None:
        return None
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    settings = LeaseSettings(config.leader_election_namespace, identity, config.leader_lease_seconds)
    lease = LeaderLease(context.kube.api_client, settings)
    reported: str | None = None
    while True:
        try:
            holder = await asyncio.to_thread(lease.try_acquire)
        except ApiException as error:
            holder = f"unknown (API error {error.status})"
        if holder is None:
            log.info("leading as %s (Lease %s/%s)", identity, settings.namespace, LEASE_NAME)
            return lease
        if holder != reported:
            log.info("standing by: the Lease %s/%s is held by %s", settings.namespace, LEASE_NAME, holder)
            reported = holder
        await asyncio.sleep(LEASE_RETRY_SECONDS)


async def _keep(lease: LeaderLease) -> None:
    """Renew the Lease; a process that loses it, or cannot renew it before it expires, stops at once."""
    settings = lease.settings
    renewed = time.monotonic()
    while True:
        await asyncio.sleep(settings.renew_seconds)
        try:
            holder = await asyncio.to_thread(lease.try_acquire)
        except ApiException as error:
            log.warning("could not renew the leader Lease: API error %s", error.status)
            holder = None if time.monotonic() - renewed < settings.duration_seconds else "nobody (expired)"
        else:
            if holder is None:
                renewed = time.monotonic()
        if holder is not None:
            log.critical("lost the leader Lease to %s: stopping so that only one operator acts", holder)
            os._exit(LOST_LEASE_EXIT)


class OperatorThread:
    """The operator on its own event loop in a background thread; ``start()`` returns once it watches."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.context = build_context(config)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="onload-operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(run_operator(self.config, context=self.context, stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as error:  # reported by start() or stop()
            self._error = error
            self._ready.set()

    def start(self, timeout: float = 30.0) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the operator did not start in time")
        if self._error is not None:
            raise RuntimeError("the operator failed to start") from self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the operator did not stop in time")

    @property
    def metrics_port(self) -> int | None:
        server = self.context.metrics_server
        return None if server is None else int(server.server_port)

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
