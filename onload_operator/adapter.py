"""The one module that talks to the Kubernetes API (the official ``kubernetes`` client).

It carries out plans: children by server-side apply under the field manager ``onload-operator`` with force,
node labels and the CR status by JSON merge patch (the status through its subresource), and core/v1 Events.
Before applying a child it re-reads it: a plan made from a watch cache that lags behind never causes a write
that the live object does not need. A DaemonSet to create again is deleted with a uid precondition instead, so
a stale plan cannot delete its successor.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from onload_operator.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from onload_operator.metrics import OperatorMetrics
from onload_operator.planner.compare import apply_reason, stale_selector_keys
from onload_operator.planner.nodes import NodeLabelPatch
from onload_operator.planner.reconcile import Apply, EventSpec, Plan, Recreate
from onload_operator.render import names

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
T = TypeVar("T")

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
NODE_PATCH_WORKERS = 8
MAX_LABEL_NAME_LENGTH = 63
"""The longest name part of a label key."""
MODULES = "modules"


class KmmMissingError(RuntimeError):
    """The cluster does not serve KMM's Module resource."""

    def __init__(self) -> None:
        super().__init__(
            f"the API server does not serve {names.KMM_API_VERSION} Modules: install Kernel Module Management (KMM)"
        )


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client for ``kubeconfig``, else the cluster the operator runs in, else the current KUBECONFIG context."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
            )
    configuration.connection_pool_maxsize = NODE_PATCH_WORKERS * 2
    api_client = client.ApiClient(configuration)
    api_client.user_agent = names.MANAGER
    return api_client


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(response: Any) -> JsonObject:
    data: JsonObject = json.loads(response.data)
    return data


class KubernetesAdapter:
    """Reads and writes of the operator; thread-safe (reconciles of different CRs run in parallel threads)."""

    def __init__(self, api_client: client.ApiClient, metrics: OperatorMetrics) -> None:
        self.api_client = api_client
        self.metrics = metrics
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._pool = ThreadPoolExecutor(NODE_PATCH_WORKERS, thread_name_prefix="node-patch")
        self._lock = threading.Lock()
        # (kind, namespace, name) -> (applied hash, resourceVersion the apply returned): a live object that the
        # server normalised differently from the manifest is not re-applied over and over.
        self._applied: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.api_client.close()  # type: ignore[no-untyped-call]

    def _write(self, verb: str, resource: str, call: Callable[[], T]) -> T:
        self.metrics.api_writes.labels(verb, resource).inc()
        return call()

    # --- children ---------------------------------------------------------------------------------------

    def read_child(self, kind: str, namespace: str, name: str) -> JsonObject | None:
        response: Any
        try:
            if kind == "DaemonSet":
                response = self.apps.read_namespaced_daemon_set(name, namespace, _preload_content=False)
            else:
                response = self.custom.get_namespaced_custom_object(
                    names.KMM_GROUP, names.KMM_VERSION, namespace, MODULES, name, _preload_content=False
                )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _json(response)

    def apply_child(self, apply: Apply) -> bool:
        """Apply a child unless the live object turns out not to need it; True when written."""
        manifest = apply.manifest
        kind, meta = manifest["kind"], manifest["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (kind, namespace, name)
        applied_hash = meta["annotations"][names.APPLIED_HASH_ANNOTATION]
        live = self.read_child(kind, namespace, name)
        if apply_reason(manifest, live) is None:
            return False
        if live is not None:
            stale = stale_selector_keys(manifest, live)
            if stale:
                self._remove_module_selector_keys(namespace, name, stale)
                return True
            with self._lock:
                last = self._applied.get(key)
            if last == (applied_hash, live["metadata"].get("resourceVersion")):
                log.debug(
                    "%s %s/%s is as last applied; the server keeps some fields its own way", kind, namespace, name
                )
                return False
        result: Any
        if kind == "DaemonSet":
            result = self._write(
                "apply",
                "daemonsets",
                lambda: self.apps.patch_namespaced_daemon_set(
                    name,
                    namespace,
                    manifest,
                    field_manager=names.MANAGER,
                    force=True,
                    _content_type=APPLY_PATCH,
                    _preload_content=False,
                ),
            )
        else:
            try:
                result = self._patch_module("apply", namespace, name, manifest, APPLY_PATCH, force=True)
            except ApiException as error:
                if error.status == 404:  # apply creates missing objects: the resource itself is missing
                    raise KmmMissingError() from error
                raise
        written = _json(result)
        with self._lock:
            self._applied[key] = (applied_hash, written["metadata"].get("resourceVersion", ""))
        log.info("applied %s %s/%s (%s)", kind, namespace, name, apply.reason)
        return True

    def delete_daemonset(self, namespace: str, recreate: Recreate) -> bool:
        """Delete the DaemonSet pods first (foreground), only if it is still the one observed; True when deleted."""
        options = client.V1DeleteOptions(
            propagation_policy="Foreground", preconditions=client.V1Preconditions(uid=recreate.uid)
        )
        try:
            self._write(
                "delete",
                "daemonsets",
                lambda: self.apps.delete_namespaced_daemon_set(
                    recreate.name, namespace, body=options, _preload_content=False
                ),
            )
        except ApiException as error:
            if error.status in (404, 409):  # gone already, or replaced by another object since
                return False
            raise
        log.info("deleting DaemonSet %s/%s to create it again", namespace, recreate.name)
        return True

    def _patch_module(
        self, verb: str, namespace: str, name: str, body: dict[str, Any], content_type: str, **options: Any
    ) -> Any:
        return self._write(
            verb,
            MODULES,
            lambda: self.custom.patch_namespaced_custom_object(
                names.KMM_GROUP,
                names.KMM_VERSION,
                namespace,
                MODULES,
                name,
                body,
                field_manager=names.MANAGER,
                _content_type=content_type,
                _preload_content=False,
                **options,
            ),
        )

    def _remove_module_selector_keys(self, namespace: str, name: str, keys: Sequence[str]) -> None:
        self._patch_module("patch", namespace, name, {"spec": {"selector": dict.fromkeys(keys)}}, MERGE_PATCH)
        log.info("removed selector keys %s that another manager left on Module %s/%s", keys, namespace, name)

    # --- nodes ----------------------------------------------------------------------------------------

    def patch_node_labels(self, patch: NodeLabelPatch) -> None:
        body = {"metadata": {"labels": dict(patch.labels)}}
        try:
            self._write(
                "patch",
                "nodes",
                lambda: self.core.patch_node(patch.node, body, _content_type=MERGE_PATCH, _preload_content=False),
            )
        except ApiException as error:
            if error.status != 404:  # a node that is gone needs no label
                raise

    def patch_nodes(self, patches: Sequence[NodeLabelPatch]) -> None:
        """Patch many nodes in parallel; raise the first error after all have been tried."""
        if len(patches) == 1:
            self.patch_node_labels(patches[0])
            return
        futures = [self._pool.submit(self.patch_node_labels, patch) for patch in patches]
        errors = [future.exception() for future in futures]
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first

    # --- the CR ---------------------------------------------------------------------------------------

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            self._write(
                "patch",
                "onloads/status",
                lambda: self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {"status": dict(status)},
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                ),
            )
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise

    def post_event(self, involved: Mapping[str, Any], event: EventSpec) -> None:
        metadata = involved.get("metadata") or {}
        namespace = metadata.get("namespace", "default")
        now = now_rfc3339()
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata.get('name', 'onload')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": metadata.get("name"),
                "namespace": namespace,
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": names.MANAGER},
            "reportingComponent": names.MANAGER,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._write(
            "create",
            "events",
            lambda: self.core.create_namespaced_event(namespace, body, _preload_content=False),
        )

    # --- plans ----------------------------------------------------------------------------------------

    def execute(self, body: Mapping[str, Any], plan: Plan) -> int:
        """Carry out a plan in order (children, nodes, status, events); returns the number of writes made."""
        metadata = body.get("metadata") or {}
        writes = sum(self.delete_daemonset(metadata["namespace"], recreate) for recreate in plan.recreates)
        writes += sum(self.apply_child(apply) for apply in plan.applies)
        if plan.node_patches:
            self.patch_nodes(plan.node_patches)
            writes += len(plan.node_patches)
        if plan.status is not None:
            self.patch_status(metadata["namespace"], metadata["name"], plan.status)
            writes += 1
        for event in plan.events:
            try:
                self.post_event(body, event)
                writes += 1
            except ApiException as error:  # an Event is best effort: never fail a reconcile for it
                log.warning("could not post event %s: %s", event.reason, error.reason)
        return writes

    def device_plugin_nodes(self, namespace: str, daemonset: str) -> frozenset[str]:
        """Nodes where a pod of the device-plugin DaemonSet exists (running or still terminating)."""
        response: Any = self.core.list_namespaced_pod(
            namespace, label_selector=f"{names.NAME_LABEL}={daemonset}", _preload_content=False
        )
        return frozenset(
            node for pod in _json(response).get("items") or [] if (node := (pod.get("spec") or {}).get("nodeName"))
        )

    def nodes_with_labels(self, keys: Sequence[str]) -> dict[str, dict[str, str]]:
        """Fresh labels of the nodes carrying any of ``keys`` (a watch cache may lag behind the last patches)."""
        found: dict[str, dict[str, str]] = {}
        for key in keys:
            if len(key.rpartition("/")[2]) > MAX_LABEL_NAME_LENGTH:
                # No node can carry it (a CR refused as NameTooLong), and the API server refuses it as a selector.
                continue
            response: Any = self.core.list_node(label_selector=key, _preload_content=False)
            for node in _json(response).get("items") or []:
                found[node["metadata"]["name"]] = dict(node["metadata"].get("labels") or {})
        return found
