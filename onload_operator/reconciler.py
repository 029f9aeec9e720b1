"""The reconciler: one pass reads the watch cache, asks the planner, and hands the plan to the executor.

Each Onload CR has one loop (``run_loop``, a kopf daemon) that reconciles it whenever it is woken (its own events,
events of its children, label changes of the nodes it selects or labelled) and every ``resync_seconds``; bursts of
events collapse into one pass. Plans are made from the watch cache (``WatchCache``, kopf indices of CRs, nodes and
owned children). A plan that would write children is made again from fresh reads of those children, so a cache that
lags behind never causes a write the live objects do not need. Pods are never cached: they are listed per node,
only for nodes that leave the selector or are under upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server

from onload_operator.actions import ApplyChild, EvictionOutcome, EvictionResult, PatchChild, ReplaceSpec
from onload_operator.api.v1alpha1 import GROUP, KIND
from onload_operator.config import OperatorConfig
from onload_operator.health import ApiHealth
from onload_operator.io.children import KmmMissingError, read_children
from onload_operator.io.client import Kube, now_rfc3339, refusal_message
from onload_operator.io.executor import Executor
from onload_operator.io.kmm import module_spec_fields
from onload_operator.io.nodes import nodes_with_labels
from onload_operator.io.pods import device_plugin_pods, pods_on_node
from onload_operator.metrics import OperatorMetrics
from onload_operator.observed import NodeView
from onload_operator.planner.checks import Problem
from onload_operator.planner.nodes import (
    crs_to_wake,
    nodes_leaving,
    orphaned_gate_labels,
    removal_patches,
)
from onload_operator.planner.reconcile import Plan, failure_plan, plan
from onload_operator.planner.snapshot import ChildKey, JsonObject, OnloadEntry, Snapshot, child_key, plugins_missing
from onload_operator.planner.status import API_REFUSED, KMM_MISSING, READY, RECONCILE_ERROR, Observation, condition_of
from onload_operator.render import names
from onload_operator.upgrade import needs_pods

log = logging.getLogger(__name__)

CrKey = tuple[str, str]
"""(namespace, name) of an Onload CR."""
ChildRef = tuple[str, str, str]
"""(namespace, kind, name) of a child."""


@dataclass(frozen=True)
class WatchCache:
    """The kopf indices a reconcile reads; kopf keeps them current from its watches."""

    nodes: kopf.Index[str, NodeView]
    onloads: kopf.Index[CrKey, OnloadEntry]
    modules: kopf.Index[ChildRef, JsonObject]
    daemonsets: kopf.Index[ChildRef, JsonObject]

    def children(self, namespace: str, owner: str) -> dict[ChildKey, JsonObject]:
        """The children of the CR ``namespace/owner`` (by owner reference)."""
        found = {
            (kind, child): _only(store)
            for index in (self.modules, self.daemonsets)
            for (child_namespace, kind, child), store in index.items()
            if child_namespace == namespace
        }
        return {key: child for key, child in found.items() if child is not None and owner_of(child) == owner}


def owner_of(child: Mapping[str, Any]) -> str | None:
    """The name of the Onload CR a child belongs to, by its owner reference."""
    for reference in (child.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("kind") == KIND and str(reference.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return str(reference.get("name"))
    return None


def _only(store: kopf.Store[Any]) -> Any:
    return next(iter(store), None)


def onload_entries(index: kopf.Index[CrKey, OnloadEntry]) -> dict[CrKey, OnloadEntry]:
    return {key: entry for key, store in index.items() if (entry := _only(store)) is not None}


def selector_of(spec: Mapping[str, Any]) -> dict[str, str]:
    """``spec.selector`` of a CR whose spec may be invalid ({} then)."""
    raw = spec.get("selector")
    if isinstance(raw, Mapping) and all(isinstance(v, str) for v in raw.values()):
        return {str(k): str(v) for k, v in raw.items()}
    return {}


@dataclass
class OperatorContext:
    """State shared by every handler of one operator process (kopf hands it over in ``memo``)."""

    config: OperatorConfig
    kube: Kube
    executor: Executor
    metrics: OperatorMetrics
    health: ApiHealth
    wakers: dict[CrKey, asyncio.Event] = field(default_factory=dict)
    locks: dict[CrKey, asyncio.Lock] = field(default_factory=dict)
    failures: dict[CrKey, list[Problem]] = field(default_factory=dict)
    failing_since: dict[CrKey, str] = field(default_factory=dict)
    """When the current run of failed passes of a CR began (its log lines say so)."""
    written_status: dict[CrKey, Mapping[str, Any]] = field(default_factory=dict)
    """The last status written per CR: newer than the watch cache until the watch event arrives."""
    observations: dict[CrKey, Observation] = field(default_factory=dict)
    """The last observation per CR: what a failure is reported with."""
    eviction_blocks: dict[CrKey, dict[str, str]] = field(default_factory=dict)
    """Per CR, node → the answer to the last refused eviction there (reported in the status, not decided on)."""
    node_fingerprints: dict[str, int] = field(default_factory=dict)
    module_spec_fields: frozenset[str] | None = None
    """The fields of the installed KMM's ``Module.spec``, read once (None until read)."""
    metrics_server: Any = None

    def waker(self, key: CrKey) -> asyncio.Event:
        return self.wakers.setdefault(key, asyncio.Event())

    def lock(self, key: CrKey) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def wake(self, key: CrKey) -> None:
        waker = self.wakers.get(key)
        if waker is not None:
            waker.set()

    def forget(self, key: CrKey) -> None:
        self.wakers.pop(key, None)
        self.locks.pop(key, None)
        self.failures.pop(key, None)
        self.failing_since.pop(key, None)
        self.written_status.pop(key, None)
        self.observations.pop(key, None)
        self.eviction_blocks.pop(key, None)
        self.metrics.forget(*key)

    def start_metrics_server(self) -> None:
        port = self.config.metrics_port
        if port is None:
            return
        server, _thread = start_http_server(port, addr=self.config.metrics_address, registry=self.metrics.registry)
        self.metrics_server = server
        log.info("serving /metrics on %s:%d", self.config.metrics_address, server.server_port)

    def stop_metrics_server(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None

    def close(self) -> None:
        self.executor.close()
        self.kube.close()


# --- one pass -------------------------------------------------------------------------------------------


def _current_body(context: OperatorContext, key: CrKey, body: Mapping[str, Any]) -> dict[str, Any]:
    """The CR as last seen, with the status this process wrote last (the watch may not have shown it yet)."""
    current = dict(body)
    if key in context.written_status:
        current["status"] = context.written_status[key]
    return current


def _snapshot(context: OperatorContext, key: CrKey, body: Mapping[str, Any], cache: WatchCache) -> Snapshot:
    failures = context.failures.get(key, [])
    return Snapshot(
        body=_current_body(context, key, body),
        nodes={node: view for node, store in cache.nodes.items() if (view := _only(store)) is not None},
        onloads=list(onload_entries(cache.onloads).values()),
        children=cache.children(*key),
        last_applied=context.executor.last_applied(key[0]),
        recent_errors=failures[-1:] if len(failures) >= context.config.degraded_after_failures else (),
        eviction_blocks=dict(context.eviction_blocks.get(key, {})),
        module_tolerations=context.module_spec_fields is None or "tolerations" in context.module_spec_fields,
    )


async def _with_pods(context: OperatorContext, key: CrKey, snapshot: Snapshot) -> Snapshot:
    """Add the pods the planner needs: device-plugin pods when nodes leave, every pod of a node whose upgrade step
    waits on pods."""
    leaving = nodes_leaving(*key, selector_of(snapshot.body.get("spec") or {}), snapshot.nodes)
    if leaving or plugins_missing(*key, snapshot):
        daemonsets = [child for kind, child in snapshot.children if kind == "DaemonSet"]
        plugins = await asyncio.to_thread(device_plugin_pods, context.kube, key[0], daemonsets)
        snapshot = dataclasses.replace(
            snapshot,
            device_plugin_nodes=frozenset(pod.node for pod in plugins if pod.node),
            device_plugin_ready_nodes=frozenset(pod.node for pod in plugins if pod.ready and not pod.terminating),
        )
    waiting = needs_pods(*key, snapshot.nodes)
    if waiting:
        listed = await asyncio.gather(*(asyncio.to_thread(pods_on_node, context.kube, node) for node in waiting))
        pods = {node: tuple(on_node) for node, on_node in zip(waiting, listed, strict=True)}
        snapshot = dataclasses.replace(snapshot, pods=pods)
    return snapshot


def _remember_evictions(
    context: OperatorContext, key: CrKey, snapshot: Snapshot, results: Sequence[EvictionResult]
) -> None:
    """Keep, per node, the API's answer to the last refused eviction: the status names it until one succeeds."""
    node_of = {(p.namespace, p.name): node for node, pods in snapshot.pods.items() for p in pods}
    blocks = context.eviction_blocks.setdefault(key, {})
    for result in results:
        node = node_of.get((result.pod.namespace, result.pod.name))
        if node is None:
            continue
        if result.outcome == EvictionOutcome.BLOCKED:
            blocks[node] = f"eviction of pod {result.pod.namespace}/{result.pod.name} refused: {result.message}"
        else:
            blocks.pop(node, None)
    for node in list(blocks):
        if node not in snapshot.pods:  # no longer evicting there
            del blocks[node]


async def _planned(context: OperatorContext, key: CrKey, snapshot: Snapshot) -> Plan:
    """The plan, made again from fresh reads of the children it would write."""
    image, now = context.config.device_plugin_image, now_rfc3339()
    result = plan(snapshot, image, now)
    applied = [child_key(a.manifest) for a in result.of(ApplyChild)]
    patched = [(a.kind, a.name) for a in result.of(PatchChild)] + [(a.kind, a.name) for a in result.of(ReplaceSpec)]
    written = list(dict.fromkeys([*applied, *patched]))
    if not written:
        return result
    fresh = await asyncio.to_thread(read_children, context.kube, key[0], written)
    children = {k: v for k, v in {**snapshot.children, **fresh}.items() if v is not None}
    return plan(dataclasses.replace(snapshot, children=children), image, now)


async def reconcile(context: OperatorContext, key: CrKey, body: Mapping[str, Any], cache: WatchCache) -> int | None:
    """One pass for one CR: the number of writes made, or None when it failed (retried with back-off)."""
    started = time.monotonic()
    try:
        if context.module_spec_fields is None:
            context.module_spec_fields = await asyncio.to_thread(module_spec_fields, context.kube)
        snapshot = await _with_pods(context, key, _snapshot(context, key, body, cache))
        result = await _planned(context, key, snapshot)
        context.observations[key] = result.observation
        executed = await asyncio.to_thread(context.executor.run, *key, result.actions)
        _remember_evictions(context, key, snapshot, executed.evictions)
    except Exception as error:
        await _failed(context, key, body, error)
        return None
    finally:
        context.metrics.reconcile_seconds.observe(time.monotonic() - started)
    if result.status is not None:
        context.written_status[key] = result.status
    context.failures.pop(key, None)
    context.failing_since.pop(key, None)
    _record(context, key, snapshot.body.get("status"), result, executed.writes)
    if executed.writes:
        log.info("reconciled Onload %s/%s with %d writes", *key, executed.writes)
    return executed.writes


def _record(context: OperatorContext, key: CrKey, current: Mapping[str, Any] | None, result: Plan, writes: int) -> None:
    """Metrics of one pass; ``current`` is the status before it."""
    obs = result.observation
    counts = {
        "selected": obs.selected,
        "module_ready": obs.module_ready,
        "device_plugin_ready": obs.device_plugin_ready,
    }
    status = result.status if result.status is not None else current
    context.metrics.record_nodes(*key, counts, condition_of(status, READY).get("status") == "True")
    if obs.upgrade is not None:
        context.metrics.record_upgrade(*key, obs.upgrade)
    outcome = "invalid" if obs.problems else "changed" if writes else "converged"
    context.metrics.reconciles.labels(outcome).inc()


REFUSALS = frozenset({400, 403, 404, 409, 410, 422})
"""API statuses that say the request itself was refused, as opposed to the server failing."""


def failure_problem(error: Exception) -> Problem:
    """How a failed pass is reported: a refused request with the server's explanation, a missing KMM, or else the
    error (API errors and a missing KMM are expected, anything else is logged whole)."""
    if isinstance(error, ApiException):
        reason = API_REFUSED if error.status in REFUSALS else RECONCILE_ERROR
        return Problem(reason, refusal_message(error))
    if isinstance(error, KmmMissingError):
        return Problem(KMM_MISSING, str(error))
    return Problem(RECONCILE_ERROR, f"{type(error).__name__}: {error}")


async def _failed(context: OperatorContext, key: CrKey, body: Mapping[str, Any], error: Exception) -> None:
    """Count a failed pass; after several in a row, report them in the status (Degraded=True)."""
    problem = failure_problem(error)
    failures = context.failures.setdefault(key, [])
    failures.append(problem)
    since = context.failing_since.setdefault(key, now_rfc3339())
    if isinstance(error, ApiException | KmmMissingError):  # one line per retry of the CR, saying since when
        log.warning(
            "reconcile of Onload %s/%s failing since %s (%d passes): %s", *key, since, len(failures), problem.message
        )
    else:
        log.exception("reconcile of Onload %s/%s failed", *key)
    context.metrics.errors.labels(type(error).__name__).inc()
    context.metrics.reconciles.labels("error").inc()
    observation = context.observations.get(key)
    if len(failures) < context.config.degraded_after_failures or observation is None:
        return
    report = failure_plan(_current_body(context, key, body), observation, problem, now_rfc3339())
    try:
        await asyncio.to_thread(context.executor.run, *key, report.actions)
    except ApiException as status_error:
        log.warning("could not report the failures of Onload %s/%s: %s", *key, status_error.reason)
        return
    if report.status is not None:
        context.written_status[key] = report.status


async def run_loop(
    context: OperatorContext, key: CrKey, body: Mapping[str, Any], stopped: kopf.DaemonStopped, cache: WatchCache
) -> None:
    """Reconcile one CR whenever it is woken, at least every resync period, with back-off after failures."""
    config = context.config
    waker, lock = context.waker(key), context.lock(key)
    stop = asyncio.ensure_future(stopped.wait())
    backoff = config.min_interval_seconds
    try:
        while not stopped:
            async with lock:
                if stopped:
                    break
                waker.clear()
                writes = await reconcile(context, key, body, cache)
            if writes is None:
                backoff = min(backoff * 2, config.max_backoff_seconds)
                delay = backoff
            else:
                backoff = config.min_interval_seconds
                # After writes, look again: the status must reflect them even if no further event concerns the CR.
                delay = config.min_interval_seconds if writes else config.resync_seconds
                observation = context.observations.get(key)
                if observation is not None and observation.rollout_waiting:
                    # Pods are not watched: a node whose upgrade waits on pods is looked at again soon.
                    delay = min(delay, config.recheck_seconds)
            # Let a burst of events accumulate, then wait for a wake-up, a stop or the next resync.
            await asyncio.wait([stop], timeout=config.min_interval_seconds)
            wake = asyncio.ensure_future(waker.wait())
            await asyncio.wait([wake, stop], timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
    finally:
        stop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stop


# --- wake-ups and cleanup -------------------------------------------------------------------------------


async def node_changed(
    context: OperatorContext, name: str, labels: Mapping[str, str], deleted: bool, index: kopf.Index[CrKey, OnloadEntry]
) -> None:
    """Wake only the CRs that select the node or whose labels it carries, and only when its labels changed;
    remove the labels of CRs deleted while no operator with a finalizer was running."""
    current = dict(labels)
    onloads = onload_entries(index)
    if deleted:
        context.node_fingerprints.pop(name, None)
    else:
        fingerprint = hash(frozenset(current.items()))
        if context.node_fingerprints.get(name) == fingerprint:
            return
        context.node_fingerprints[name] = fingerprint
    for key in crs_to_wake(current, {key: entry.selector for key, entry in onloads.items()}):
        context.wake(key)
    if deleted:
        return
    served = context.config.namespaces
    orphans = [
        (namespace, cr)
        for namespace, cr in orphaned_gate_labels(current, set(onloads))
        # An operator limited to some namespaces cannot know the CRs of the others: their labels are not orphans.
        if not served or namespace in served
    ]
    if orphans:
        log.info("removing the labels of deleted Onload CRs %s from node %s", orphans, name)
        node = {name: NodeView(name, labels=current)}
        for namespace, cr in orphans:
            await asyncio.to_thread(context.executor.run, namespace, cr, removal_patches(namespace, cr, node))


async def remove_node_labels(context: OperatorContext, namespace: str, name: str) -> int:
    """Remove every label of a deleted CR from the nodes (read fresh); returns the number of nodes patched."""
    nodes = await asyncio.to_thread(nodes_with_labels, context.kube, names.node_label_keys(namespace, name))
    patches = removal_patches(namespace, name, nodes)
    await asyncio.to_thread(context.executor.run, namespace, name, patches)
    return len(patches)
