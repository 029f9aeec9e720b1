"""The kopf handlers: they wire watches, indices, the per-CR daemon and the finalizer to ``reconciler``.

Nothing is decided here: every handler hands over to a function of ``reconciler``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
from kopf._cogs.clients import watching
from kubernetes.client.exceptions import ApiException

from onload_operator import reconciler
from onload_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from onload_operator.health import ApiHealth, OutageLogFilter
from onload_operator.observed import NodeView, node_view
from onload_operator.planner.snapshot import JsonObject, OnloadEntry
from onload_operator.reconciler import ChildRef, CrKey, OperatorContext, WatchCache
from onload_operator.render import names

log = logging.getLogger(__name__)

REGISTRY = kopf.OperatorRegistry()

WATCHED = (PLURAL, "nodes")
"""Resources whose watch always runs (the Modules' and DaemonSets' are tracked once they are heard from: KMM may
be missing)."""
RETRY_LOGGERS = ("kopf._cogs.clients.watching", "kopf._cogs.clients.api")
"""The loggers of kopf's request retries (one line per watch per attempt during an outage)."""

_health_by_settings: dict[int, ApiHealth] = {}
_kopf_infinite_watch = watching.infinite_watch


async def _heard_watch(*, settings: kopf.OperatorSettings, resource: Any, **options: Any) -> AsyncIterator[Any]:
    """kopf's watch stream, noting each event and bookmark it receives: kopf has no public hook for bookmarks,
    which are what tells a quiet watch from a stuck one."""
    async for event in _kopf_infinite_watch(settings=settings, resource=resource, **options):
        health = _health_by_settings.get(id(settings))
        if health is not None:
            health.heard(resource.plural)
        yield event


watching.infinite_watch = _heard_watch


def context_of(memo: Any) -> OperatorContext:
    context: OperatorContext = memo["context"]
    return context


# --- operator lifecycle ---------------------------------------------------------------------------------


@kopf.on.startup(registry=REGISTRY)
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="onload.amd.com")
    # No handler here reads a diff, and kopf's diff base would copy the spec into an annotation: a large spec
    # doubled passes the API server's 256 KiB limit on annotations, and every later write of the CR (its
    # finalizer's removal included) would be refused. The diff base keeps only what kopf needs to see a change.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="onload.amd.com", key="last-handled-configuration", ignored_fields=["spec", "metadata"]
    )
    settings.posting.enabled = False  # Events are posted by the executor, once per transition
    settings.background.cancellation_polling = 0.5
    settings.background.instant_exit_timeout = 2.0
    settings.watching.server_timeout = 600
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # kopf logs every handled watch event at INFO (thousands per minute with many nodes), and the health server
    # every probe and its access: keep their warnings and errors.
    for name in ("kopf.objects", "kopf.activities.probe", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = context_of(memo)
    _health_by_settings[id(settings)] = context.health
    outage_filter = OutageLogFilter(context.health)
    for name in RETRY_LOGGERS:
        logging.getLogger(name).addFilter(outage_filter)
    memo["outage_filter"] = outage_filter
    context.start_metrics_server()


@kopf.on.cleanup(registry=REGISTRY)
async def shut_down(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    _health_by_settings.pop(id(settings), None)
    for name in RETRY_LOGGERS:
        logging.getLogger(name).removeFilter(memo["outage_filter"])
    context_of(memo).stop_metrics_server()


@kopf.on.login(registry=REGISTRY)
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the same credentials as the executor's client."""
    configuration = context_of(memo).kube.api_client.configuration
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


@kopf.on.probe(id="api", registry=REGISTRY)
def api_contact(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Each watch's last contact with the API server; fails the liveness probe where a restart helps."""
    health = context_of(memo).health
    stuck = health.stuck()
    if stuck:
        raise kopf.PermanentError(
            f"watches of {', '.join(stuck)} heard nothing for more than {health.stuck_seconds:g} s: restart"
        )
    return health.report()


# --- watch caches ---------------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, PLURAL, registry=REGISTRY)
def onload_selectors(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[CrKey, OnloadEntry]:
    namespace = namespace or "default"
    entry = OnloadEntry(namespace, name, reconciler.selector_of(spec), str(meta.get("creationTimestamp") or ""))
    return {(namespace, name): entry}


@kopf.index("v1", "nodes", registry=REGISTRY)
def node_views(name: str, body: kopf.Body, **_: Any) -> dict[str, NodeView]:
    return {name: node_view(body)}


def _owner(meta: kopf.Meta) -> str | None:
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == "Onload" and reference.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(reference.get("name"))
    return None


def owned_by_onload(meta: kopf.Meta, **_: Any) -> bool:
    """Children are recognised by their owner reference, not by labels (see planner.takeover)."""
    return _owner(meta) is not None


@kopf.index(names.KMM_GROUP, names.KMM_VERSION, "modules", when=owned_by_onload, registry=REGISTRY)
def owned_modules(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[ChildRef, JsonObject]:
    return {(namespace or "", "Module", name): copy.deepcopy(dict(body))}


@kopf.index("apps", "v1", "daemonsets", when=owned_by_onload, registry=REGISTRY)
def owned_daemonsets(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[ChildRef, JsonObject]:
    return {(namespace or "", "DaemonSet", name): copy.deepcopy(dict(body))}


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
    onload_selectors: kopf.Index[CrKey, OnloadEntry] | None = None,
    **_: Any,
) -> None:
    assert onload_selectors is not None
    await reconciler.node_changed(context_of(memo), name, labels, type == "DELETED", onload_selectors)


# --- reconcile ------------------------------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, PLURAL, registry=REGISTRY)
async def reconcile_loop(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    node_views: kopf.Index[str, NodeView] | None = None,
    onload_selectors: kopf.Index[CrKey, OnloadEntry] | None = None,
    owned_modules: kopf.Index[ChildRef, JsonObject] | None = None,
    owned_daemonsets: kopf.Index[ChildRef, JsonObject] | None = None,
    **_: Any,
) -> None:
    # kopf always passes every index; the defaults only satisfy its handler protocol.
    assert node_views is not None
    assert onload_selectors is not None
    assert owned_modules is not None
    assert owned_daemonsets is not None
    cache = WatchCache(node_views, onload_selectors, owned_modules, owned_daemonsets)
    await reconciler.run_loop(context_of(memo), (namespace or "default", name), body, stopped, cache)


@kopf.on.delete(GROUP, VERSION, PLURAL, registry=REGISTRY)
async def remove_node_labels(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Remove the CR's node labels before the finalizer goes; garbage collection removes the children."""
    context = context_of(memo)
    key = (namespace or "default", name)
    async with context.lock(key):
        try:
            patched = await reconciler.remove_node_labels(context, *key)
        except ApiException as error:
            raise kopf.TemporaryError(
                f"could not remove node labels: {error.status} {error.reason}", delay=1
            ) from error
    log.info("removed the labels of Onload %s/%s from %d nodes", *key, patched)
    context.forget(key)
