"""Thin kopf handlers: watch the cluster, wake the right CRs, run the planner and hand its plan to the adapter.

Each Onload CR has one daemon that reconciles it whenever it is woken (its own events, events of its children,
label changes of the nodes it selects or labelled) and every ``resync_seconds``; bursts of events collapse into
one reconcile. Plans are made from watch caches (kopf indices of CRs, nodes and owned children); a child is
re-read only right before it would be written. Pods are not watched at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server

from onload_operator.adapter import KmmMissingError, KubernetesAdapter, now_rfc3339
from onload_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from onload_operator.config import OperatorConfig
from onload_operator.metrics import OperatorMetrics
from onload_operator.planner.nodes import crs_to_wake, nodes_leaving, orphaned_gate_labels, removal_patches
from onload_operator.planner.reconcile import Plan, plan
from onload_operator.planner.snapshot import OnloadEntry, Snapshot
from onload_operator.planner.status import READY, condition_of
from onload_operator.render import names

log = logging.getLogger(__name__)

REGISTRY = kopf.OperatorRegistry()

CrKey = tuple[str, str]


@dataclass
class OperatorContext:
    """State shared by every handler of one operator process (kopf hands it over in ``memo``)."""

    config: OperatorConfig
    adapter: KubernetesAdapter
    metrics: OperatorMetrics
    wakers: dict[CrKey, asyncio.Event] = field(default_factory=dict)
    locks: dict[CrKey, asyncio.Lock] = field(default_factory=dict)
    failures: dict[CrKey, list[str]] = field(default_factory=dict)
    written_status: dict[CrKey, dict[str, Any]] = field(default_factory=dict)
    """The last status written per CR: newer than the watch cache until the watch event arrives."""
    node_fingerprints: dict[str, int] = field(default_factory=dict)
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
        self.written_status.pop(key, None)
        self.metrics.forget(*key)


def context_of(memo: Any) -> OperatorContext:
    context: OperatorContext = memo["context"]
    return context


# --- operator lifecycle ---------------------------------------------------------------------------------


@kopf.on.startup(registry=REGISTRY)
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="onload.amd.com")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="onload.amd.com", key="last-handled-configuration"
    )
    settings.posting.enabled = False  # Events are posted by the adapter, once per transition
    settings.background.cancellation_polling = 0.5
    settings.background.instant_exit_timeout = 2.0
    settings.watching.server_timeout = 600
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # kopf logs every handled watch event at INFO (thousands per minute with many nodes); keep its warnings.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    context = context_of(memo)
    port = context.config.metrics_port
    if port is not None:
        server, _thread = start_http_server(
            port, addr=context.config.metrics_address, registry=context.metrics.registry
        )
        context.metrics_server = server
        log.info("serving /metrics on %s:%d", context.config.metrics_address, server.server_port)


@kopf.on.cleanup(registry=REGISTRY)
async def shut_down(memo: kopf.Memo, **_: Any) -> None:
    context = context_of(memo)
    if context.metrics_server is not None:
        context.metrics_server.shutdown()
        context.metrics_server.server_close()
        context.metrics_server = None


@kopf.on.login(registry=REGISTRY)
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the same credentials as the adapter's client."""
    configuration = context_of(memo).adapter.api_client.configuration
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _space, token = (header or "").partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


@kopf.on.probe(id="reconcilers", registry=REGISTRY)
def reconcilers(memo: kopf.Memo, **_: Any) -> int:
    return len(context_of(memo).wakers)


# --- watch caches ---------------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, PLURAL, registry=REGISTRY)
def onload_selectors(namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict[CrKey, Any]:
    namespace = namespace or "default"
    entry = OnloadEntry(namespace, name, _selector_of(spec), str(meta.get("creationTimestamp") or ""))
    return {(namespace, name): entry}


@kopf.index("v1", "nodes", registry=REGISTRY)
def node_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    return {name: dict(labels)}


def _owner(meta: kopf.Meta) -> str | None:
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == "Onload" and reference.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(reference.get("name"))
    return None


def owned_by_onload(meta: kopf.Meta, **_: Any) -> bool:
    """Children are recognised by their owner reference, not by labels: the Go operator's first release set none."""
    return _owner(meta) is not None


@kopf.index(names.KMM_GROUP, names.KMM_VERSION, "modules", when=owned_by_onload, registry=REGISTRY)
def owned_modules(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str, str], Any]:
    return {(namespace or "", "Module", name): copy.deepcopy(dict(body))}


@kopf.index("apps", "v1", "daemonsets", when=owned_by_onload, registry=REGISTRY)
def owned_daemonsets(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str, str], Any]:
    return {(namespace or "", "DaemonSet", name): copy.deepcopy(dict(body))}


def _selector_of(spec: Mapping[str, Any]) -> dict[str, str]:
    """``spec.selector`` of a CR whose spec may be invalid ({} then)."""
    raw = spec.get("selector")
    if isinstance(raw, Mapping) and all(isinstance(v, str) for v in raw.values()):
        return {str(k): str(v) for k, v in raw.items()}
    return {}


def _only(store: Any) -> Any:
    return next(iter(store), None)


# --- wake-ups -------------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL, registry=REGISTRY)
def onload_changed(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    context_of(memo).wake((namespace or "default", name))


@kopf.on.event(names.KMM_GROUP, names.KMM_VERSION, "modules", when=owned_by_onload, registry=REGISTRY)
@kopf.on.event("apps", "v1", "daemonsets", when=owned_by_onload, registry=REGISTRY)
def child_changed(namespace: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    owner = _owner(meta)
    if owner is not None and namespace:
        context_of(memo).wake((namespace, owner))


@kopf.on.event("v1", "nodes", registry=REGISTRY)
async def node_changed(
    name: str,
    labels: kopf.Labels,
    type: str,
    memo: kopf.Memo,
    onload_selectors: kopf.Index[CrKey, Any] | None = None,
    **_: Any,
) -> None:
    """Wake only the CRs that select the node or whose labels it carries, and only when its labels changed."""
    context = context_of(memo)
    current = dict(labels)
    assert onload_selectors is not None
    if type == "DELETED":
        context.node_fingerprints.pop(name, None)
    else:
        fingerprint = hash(frozenset(current.items()))
        if context.node_fingerprints.get(name) == fingerprint:
            return
        context.node_fingerprints[name] = fingerprint
    entries = {key: entry for key, store in onload_selectors.items() if (entry := _only(store)) is not None}
    for key in crs_to_wake(current, {key: entry.selector for key, entry in entries.items()}):
        context.wake(key)
    existing = set(entries)
    served = context.config.namespaces
    orphans = [
        (namespace, cr)
        for namespace, cr in (orphaned_gate_labels(current, existing) if type != "DELETED" else [])
        # An operator limited to some namespaces cannot know the CRs of the others: their labels are not orphans.
        if not served or namespace in served
    ]
    if orphans:
        # Labels of CRs deleted while no operator with a finalizer was running.
        patches = [p for namespace, cr in orphans for p in removal_patches(namespace, cr, {name: current})]
        log.info("removing the labels of deleted Onload CRs %s from node %s", orphans, name)
        await asyncio.to_thread(context.adapter.patch_nodes, patches)


# --- reconcile ------------------------------------------------------------------------------------------


def _snapshot(
    key: CrKey,
    body: Mapping[str, Any],
    context: OperatorContext,
    nodes: kopf.Index[str, Any],
    onloads: kopf.Index[CrKey, Any],
    modules: kopf.Index[tuple[str, str, str], Any],
    daemonsets: kopf.Index[tuple[str, str, str], Any],
) -> Snapshot:
    namespace = key[0]
    children = {
        (kind, child): _only(store)
        for index in (modules, daemonsets)
        for (child_namespace, kind, child), store in index.items()
        if child_namespace == namespace
    }
    body = dict(body)
    if key in context.written_status:
        body["status"] = context.written_status[key]
    failures = context.failures.get(key, [])
    return Snapshot(
        body=body,
        nodes={node: _only(store) for node, store in nodes.items()},
        onloads=[entry for store in onloads.values() if (entry := _only(store)) is not None],
        children={k: v for k, v in children.items() if v is not None},
        recent_errors=failures[-1:] if len(failures) >= context.config.degraded_after_failures else (),
    )


def _record(context: OperatorContext, key: CrKey, current: Mapping[str, Any] | None, result: Plan, writes: int) -> None:
    """Metrics of one reconcile; ``current`` is the status before it."""
    obs = result.observation
    counts = {
        "selected": obs.selected,
        "module_ready": obs.module_ready,
        "device_plugin_ready": obs.device_plugin_ready,
    }
    status = result.status if result.status is not None else current
    context.metrics.record_nodes(*key, counts, condition_of(status, READY).get("status") == "True")
    outcome = "invalid" if obs.problems else "changed" if writes else "converged"
    context.metrics.reconciles.labels(outcome).inc()


async def reconcile(
    key: CrKey,
    body: Mapping[str, Any],
    context: OperatorContext,
    indices: tuple[Any, Any, Any, Any],
) -> int | None:
    """One reconcile of one CR: the number of writes made, or None when it failed (retried with back-off)."""
    started = time.monotonic()
    try:
        snapshot = _snapshot(key, body, context, *indices)
        if nodes_leaving(*key, _selector_of(body.get("spec") or {}), snapshot.nodes):
            pods = await asyncio.to_thread(
                context.adapter.device_plugin_nodes, key[0], names.device_plugin_name(key[1])
            )
            snapshot = dataclasses.replace(snapshot, device_plugin_nodes=pods)
        result = plan(snapshot, context.config.device_plugin_image, now_rfc3339())
        writes = await asyncio.to_thread(context.adapter.execute, body, result)
    except Exception as error:
        await _failed(key, body, context, indices, error)
        return None
    finally:
        context.metrics.reconcile_seconds.observe(time.monotonic() - started)
    if result.status is not None:
        context.written_status[key] = result.status
    context.failures.pop(key, None)
    _record(context, key, snapshot.body.get("status"), result, writes)
    if writes:
        log.info("reconciled Onload %s/%s with %d writes", *key, writes)
    return writes


async def _failed(
    key: CrKey, body: Mapping[str, Any], context: OperatorContext, indices: tuple[Any, Any, Any, Any], error: Exception
) -> None:
    """Count a failed reconcile; after several in a row, report them in the status (Degraded=True)."""
    if isinstance(error, ApiException):
        message = f"API error {error.status} {error.reason}".strip()
        log.warning("reconcile of Onload %s/%s failed: %s", *key, message)
    elif isinstance(error, KmmMissingError):
        message = str(error)
        log.warning("reconcile of Onload %s/%s failed: %s", *key, message)
    else:
        message = f"{type(error).__name__}: {error}"
        log.exception("reconcile of Onload %s/%s failed", *key)
    failures = context.failures.setdefault(key, [])
    failures.append(message)
    context.metrics.errors.labels(type(error).__name__).inc()
    context.metrics.reconciles.labels("error").inc()
    if len(failures) < context.config.degraded_after_failures:
        return
    report = plan(_snapshot(key, body, context, *indices), context.config.device_plugin_image, now_rfc3339())
    try:
        await asyncio.to_thread(context.adapter.execute, body, report.status_only())
    except ApiException as status_error:
        log.warning("could not report the failures of Onload %s/%s: %s", *key, status_error.reason)
        return
    if report.status is not None:
        context.written_status[key] = report.status


@kopf.daemon(GROUP, VERSION, PLURAL, registry=REGISTRY)
async def reconcile_loop(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    node_labels: kopf.Index[str, Any] | None = None,
    onload_selectors: kopf.Index[CrKey, Any] | None = None,
    owned_modules: kopf.Index[tuple[str, str, str], Any] | None = None,
    owned_daemonsets: kopf.Index[tuple[str, str, str], Any] | None = None,
    **_: Any,
) -> None:
    """Reconcile one CR whenever it is woken, at least every resync period, with back-off after failures."""
    context = context_of(memo)
    key = (namespace or "default", name)
    waker, lock = context.waker(key), context.lock(key)
    indices = (node_labels, onload_selectors, owned_modules, owned_daemonsets)
    stop = asyncio.ensure_future(stopped.wait())
    backoff = context.config.min_interval_seconds
    try:
        while not stopped:
            async with lock:
                if stopped:
                    break
                waker.clear()
                writes = await reconcile(key, body, context, indices)
            if writes is None:
                backoff = min(backoff * 2, context.config.max_backoff_seconds)
                delay = backoff
            else:
                backoff = context.config.min_interval_seconds
                # After writes, look again: the status must reflect them even if no further event concerns the CR.
                delay = context.config.min_interval_seconds if writes else context.config.resync_seconds
            # Let a burst of events accumulate, then wait for a wake-up, a stop or the next resync.
            await asyncio.wait([stop], timeout=context.config.min_interval_seconds)
            wake = asyncio.ensure_future(waker.wait())
            await asyncio.wait([wake, stop], timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
    finally:
        stop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stop


@kopf.on.delete(GROUP, VERSION, PLURAL, registry=REGISTRY)
async def remove_node_labels(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Remove the CR's node labels before the finalizer goes; garbage collection removes the children."""
    context = context_of(memo)
    namespace = namespace or "default"
    key = (namespace, name)
    async with context.lock(key):
        try:
            nodes = await asyncio.to_thread(context.adapter.nodes_with_labels, names.node_label_keys(namespace, name))
            patches = removal_patches(namespace, name, nodes)
            await asyncio.to_thread(context.adapter.patch_nodes, patches)
        except ApiException as error:
            raise kopf.TemporaryError(
                f"could not remove node labels: {error.status} {error.reason}", delay=1
            ) from error
    log.info("removed the labels of Onload %s/%s from %d nodes", namespace, name, len(patches))
    context.forget(key)
