"""Shared helpers of kubesim's contract tests: the ``Cluster`` handle, the Widget CRD and watch decoding."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from kubesim.polling import wait_for
from kubesim.simulator import Simulator

T = TypeVar("T")

REAL_CLUSTER_KUBECONFIG = os.environ.get("KUBESIM_CONTRACT_KUBECONFIG")
NO_CORE_KINDS = "needs core kinds (Pods, Nodes, Namespaces, ...), which this API server does not serve"
REPO = Path(__file__).resolve().parents[2]
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.contract.kubesim.test"},
    "spec": {
        "group": "contract.kubesim.test",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.mode != 'fast' || self.size <= 5",
                                        "message": "fast widgets are small",
                                    }
                                ],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                                    "ports": {
                                        "type": "array",
                                        "maxItems": 2,
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "port": {"type": "integer"},
                                                "protocol": {"type": "string", "default": "TCP"},
                                            },
                                        },
                                    },
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "target": {"x-kubernetes-int-or-string": True},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "count": {"type": "integer"},
                                    "conditions": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["type"],
                                        "items": {
                                            "type": "object",
                                            "required": ["type", "status"],
                                            "properties": {"type": {"type": "string"}, "status": {"type": "string"}},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}
WIDGET_CRD_NAME = WIDGET_CRD["metadata"]["name"]
WIDGET_GROUP, WIDGET_VERSION, WIDGET_PLURAL = "contract.kubesim.test", "v1", "widgets"


@dataclass
class Cluster:
    """The API under test: the official client plus raw HTTP, and kubesim's handle when it is kubesim."""

    api: client.ApiClient
    sim: Simulator | None
    namespaces: list[str] = field(default_factory=list)
    created_widget_crd: bool = False

    # The API objects are typed Any: tests read optional model fields without a None check at every step.
    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> Any:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.api)

    @property
    def policy(self) -> Any:
        return client.PolicyV1Api(self.api)

    @property
    def extensions(self) -> Any:
        return client.ApiextensionsV1Api(self.api)

    @cached_property
    def serves_core_kinds(self) -> bool:
        """False for an API server of custom resources only (apiextensions-apiserver)."""
        status, body = self.http("GET", "/api/v1")
        return status == 200 and isinstance(body, dict) and body.get("kind") == "APIResourceList"

    def require_core_kinds(self) -> None:
        if not self.serves_core_kinds:
            pytest.skip(NO_CORE_KINDS)

    def require_sim(self) -> Simulator:
        if self.sim is None:
            pytest.skip("needs kubesim's own hooks")
        return self.sim

    def headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        result = {"Accept": "application/json"}
        for setting in self.api.configuration.auth_settings().values():
            result[setting["key"]] = setting["value"]
        result.update(headers or {})
        return result

    def http(self, method: str, path: str, body: Any = None, **options: Any) -> tuple[int, Any]:
        """A raw request; returns the status code and the decoded JSON body (None when empty or not JSON).

        The options are those of ``http_with_warnings``."""
        status, decoded, _ = self.http_with_warnings(method, path, body, **options)
        return status, decoded

    def http_with_warnings(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 10,
    ) -> tuple[int, Any, list[str]]:
        """``http`` plus the ``Warning`` headers of the response, in order."""
        data = None if body is None else body if isinstance(body, bytes | str) else json.dumps(body)
        all_headers = self.headers(headers)
        if data is not None:
            all_headers["Content-Type"] = content_type
        response = self.api.rest_client.pool_manager.request(
            method, self.api.configuration.host + path, body=data, headers=all_headers, timeout=timeout, retries=False
        )
        warnings = list(response.headers.getlist("Warning"))
        try:
            return response.status, json.loads(response.data) if response.data else None, warnings
        except ValueError:
            return response.status, None, warnings

    def watch_lines(self, path: str, *, timeout: float = 10) -> Any:
        """An open streaming response for a watch URL; iterate ``read_events`` over it."""
        return self.api.rest_client.pool_manager.request(
            "GET",
            self.api.configuration.host + path,
            headers=self.headers(None),
            preload_content=False,
            timeout=timeout,
        )

    def namespace(self) -> str:
        """A fresh namespace; a server without core kinds serves custom resources in any namespace name."""
        name = f"contract-{uuid.uuid4().hex[:8]}"
        if self.serves_core_kinds:
            self.core.create_namespace({"metadata": {"name": name}})
            self.namespaces.append(name)
        return name

    def ready_node(self) -> str:
        for node in self.core.list_node().items:
            conditions = node.status.conditions or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                return str(node.metadata.name)
        pytest.skip("no Ready node")

    def widget_crd(self) -> None:
        """Create the Widget CRD (if absent) and wait until its resource is served.

        A Widget CRD that a previous test deleted may still be terminating (a real server takes a moment to remove
        its custom resources): wait for it to go, then create a fresh one.
        """
        crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{WIDGET_CRD_NAME}"

        def present_and_live() -> bool:
            status, existing = self.http("GET", crd_path)
            if status == 404:
                status, _ = self.http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
                if status == 201:
                    self.created_widget_crd = True
                return False
            return status == 200 and "deletionTimestamp" not in existing["metadata"]

        def established() -> bool:
            status, crd = self.http("GET", crd_path)
            conditions = (crd or {}).get("status", {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
            status, _ = self.http("GET", f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}")
            return status == 200

        wait_for(present_and_live, timeout=60, message="a live Widget CRD")
        wait_for(established, timeout=30, message="the Widget resource to be served")


def widget(name: str, spec: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    """A Widget manifest (``size`` 1 unless a spec is given)."""
    return {
        "apiVersion": f"{WIDGET_GROUP}/{WIDGET_VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, **metadata},
        "spec": {"size": 1} if spec is None else spec,
    }


def read_events(response: Any) -> Iterator[dict[str, Any]]:
    """Decode the newline-delimited JSON events of a watch stream."""
    buffer = b""
    for chunk in response.stream(1024, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
