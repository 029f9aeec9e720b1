"""A simulated cluster (kubesim over HTTP) with the real operator running against it, for integration tests.

Every HTTP request reaching kubesim is recorded with its user agent, so tests can tell the operator's calls
(kopf's ``kopf/...`` and the executor's ``onload-operator``) from their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubesim.controllers import ControllerSettings
from kubesim.polling import wait_for
from kubesim.simulator import Simulator
from onload_operator.config import OperatorConfig
from onload_operator.planner.status import READY, condition_of
from onload_operator.render import names
from onload_operator.runtime import OperatorThread
from tests.unit.onload_samples import cr_body

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
IMAGE = "registry.example.com/onload-device-plugin:1.0"
GROUP, VERSION, PLURAL = "onload.amd.com", "v1alpha1", "onloads"
OPERATOR_AGENTS = ("kopf/", names.MANAGER)


@dataclass(frozen=True)
class Request:
    agent: str
    method: str
    path: str
    query: dict[str, str]
    content_type: str = ""
    status: int = 0

    @property
    def by_operator(self) -> bool:
        return self.agent.startswith(OPERATOR_AGENTS)

    @property
    def is_write(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Intercepted:
    """A write request as an interceptor sees it."""

    agent: str
    method: str
    path: str
    body: bytes


Interceptor = Callable[[Intercepted], object]


@dataclass
class Cluster:
    sim: Simulator
    kubeconfig: Path
    requests: list[Request] = field(default_factory=list)
    operator: OperatorThread | None = None
    interceptors: list[Interceptor] = field(default_factory=list)
    """Called with each write request before kubesim handles it; one may raise an aiohttp HTTP error instead."""

    def __post_init__(self) -> None:
        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        # Typed as Any: the tests read the client's models and dicts freely.
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.apps: Any = client.AppsV1Api(api_client)

    # --- operator ------------------------------------------------------------------------------------

    def start_operator(self, **overrides: Any) -> OperatorThread:
        settings: dict[str, Any] = {
            "device_plugin_image": IMAGE,
            "kubeconfig": str(self.kubeconfig),
            "metrics_port": 0,
            "metrics_address": "127.0.0.1",
            "liveness_endpoint": None,
            "resync_seconds": 30.0,
            "min_interval_seconds": 0.05,
            "max_backoff_seconds": 1.0,
        }
        settings.update(overrides)
        self.operator = OperatorThread(OperatorConfig(**settings)).start()
        return self.operator

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def operator_writes(self) -> list[Request]:
        return [r for r in self.requests if r.by_operator and r.is_write]

    # --- objects ---------------------------------------------------------------------------------------

    def create_onload(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        return result

    def onload(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return result

    def patch_onload(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch, _content_type="application/merge-patch+json"
        )

    def delete_onload(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def onload_exists(self, namespace: str, name: str) -> bool:
        try:
            self.onload(namespace, name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def module(self, namespace: str, name: str) -> Any:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                names.KMM_GROUP, names.KMM_VERSION, namespace, "modules", name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    def patch_module(
        self, namespace: str, name: str, patch: dict[str, Any], manager: str | None = None, apply: bool = False
    ) -> None:
        """Merge-patch a Module (as ``manager``, if given), or server-side apply ``patch`` with force."""
        options: dict[str, Any] = {"field_manager": manager} if manager is not None else {}
        if apply:
            options["force"] = True
        self.custom.patch_namespaced_custom_object(
            names.KMM_GROUP,
            names.KMM_VERSION,
            namespace,
            "modules",
            name,
            patch,
            _content_type="application/apply-patch+yaml" if apply else "application/merge-patch+json",
            **options,
        )

    def daemonset(self, namespace: str, name: str) -> Any:
        try:
            return self.apps.read_namespaced_daemon_set(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def node_labels(self) -> dict[str, dict[str, str]]:
        return {n.metadata.name: dict(n.metadata.labels or {}) for n in self.core.list_node().items}

    def label_node(self, node: str, labels: dict[str, str | None]) -> None:
        self.core.patch_node(node, {"metadata": {"labels": labels}}, _content_type="application/merge-patch+json")

    def events(self, namespace: str, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(namespace).items
        return [e for e in items if e.involved_object.name == name and e.involved_object.kind == "Onload"]

    def condition(self, namespace: str, name: str, type_: str = "Ready") -> dict[str, Any]:
        return condition_of(self.onload(namespace, name).get("status"), type_)

    def wait_ready(self, namespace: str, name: str, timeout: float = 20.0, **counts: int) -> Any:
        """Wait until the CR is Ready for its current generation, with these ``status.nodes`` counts if given (they
        follow node and pod events, so a Ready status may still show earlier ones), and return it."""

        def reached() -> dict[str, Any] | None:
            body = self.onload(namespace, name)
            ready = condition_of(body.get("status"), READY)
            current = (
                ready.get("status") == "True" and ready.get("observedGeneration") == body["metadata"]["generation"]
            )
            return body if current and body["status"]["nodes"].items() >= counts.items() else None

        return wait_for(reached, timeout, f"Onload {namespace}/{name} Ready with nodes {counts}")

    def wait_reason(
        self, namespace: str, name: str, reason: str, type_: str = "Ready", timeout: float = 20.0
    ) -> dict[str, Any]:
        """Wait until the CR's condition ``type_`` has ``reason``, and return that condition."""

        def reached() -> dict[str, Any] | None:
            condition = self.condition(namespace, name, type_)
            return condition if condition.get("reason") == reason else None

        return wait_for(reached, timeout, f"{type_} reason {reason} on Onload {namespace}/{name}")


def onload_body(name: str = "onload", namespace: str = "onload", **spec: Any) -> dict[str, Any]:
    """An Onload CR to create: the unit tests' sample without the fields the API server assigns."""
    body = cr_body(name, namespace, **spec)
    body["metadata"] = {"name": name, "namespace": namespace}
    return body


@contextmanager
def simulated_cluster(
    tmp_path: Path, nodes: str = "worker-[0-2]:labels=node-role.kubernetes.io/worker=", **settings: Any
) -> Iterator[Cluster]:
    """kubesim with the Onload CRD, the given nodes and fast simulated controllers; the operator is not started."""
    sim = Simulator(
        nodes=nodes,
        crds=[CRD_DIR],
        controllers=ControllerSettings(
            pod_start_delay=0.02, pod_stop_delay=0.02, kmm_load_delay=0.05, kmm_unload_delay=0.02, **settings
        ),
    )
    requests: list[Request] = []
    interceptors: list[Interceptor] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        agent, query = request.headers.get("User-Agent", ""), dict(request.query)
        if interceptors and request.method in {"POST", "PUT", "PATCH", "DELETE"}:
            seen = Intercepted(agent, request.method, request.path, await request.read())
            for intercept in interceptors:
                intercept(seen)
        if query.get("watch") in {"true", "1"}:  # recorded at once: a watch lasts as long as the test
            requests.append(Request(agent, request.method, request.path, query, request.content_type))
            watch: web.StreamResponse = await handler(request)
            return watch
        try:
            response: web.StreamResponse = await handler(request)
        except Exception as error:  # kubesim's ApiError becomes a Status response in an outer middleware
            status = int(getattr(error, "code", getattr(error, "status", 500)))
            requests.append(Request(agent, request.method, request.path, query, request.content_type, status))
            raise
        requests.append(Request(agent, request.method, request.path, query, request.content_type, response.status))
        return response

    sim.server.app.middlewares.append(record)
    sim.start()
    cluster = Cluster(sim, sim.write_kubeconfig(tmp_path / "kubeconfig"), requests, interceptors=interceptors)
    try:
        cluster.core.create_namespace({"metadata": {"name": "onload"}})
        yield cluster
    finally:
        cluster.stop_operator()
        sim.stop()


def load_crd() -> dict[str, Any]:
    documents = yaml.safe_load_all((CRD_DIR / "onload.amd.com_onloads.yaml").read_text())
    return next(d for d in documents if d and d.get("kind") == "CustomResourceDefinition")
