"""Shared helpers of kubesim's contract tests: the ``Cluster`` handle, the Widget CRD and watch decoding."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from kubesim.polling import wait_for
from kubesim.simulator import Simulator

T = TypeVar("T")

REAL_CLUSTER_KUBECONFIG = os.environ.get("KUBESIM_CONTRACT_KUBECONFIG")
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
                                "properties": {"phase": {"type": "string"}, "count": {"type": "integer"}},
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

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 10,
    ) -> tuple[int, Any]:
        """A raw request; returns the status code and the decoded JSON body (None when empty or not JSON)."""
        data = None if body is None else body if isinstance(body, bytes | str) else json.dumps(body)
        all_headers = self.headers(headers)
        if data is not None:
            all_headers["Content-Type"] = content_type
        response = self.api.rest_client.pool_manager.request(
            method, self.api.configuration.host + path, body=data, headers=all_headers, timeout=timeout, retries=False
        )
        try:
            return response.status, json.loads(response.data) if response.data else None
        except ValueError:
            return response.status, None

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
        name = f"contract-{uuid.uuid4().hex[:8]}"
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
        """Create the Widget CRD (if absent) and wait until its resource is served."""
        try:
            self.extensions.create_custom_resource_definition(WIDGET_CRD)
            self.created_widget_crd = True
        except client.ApiException as error:
            if error.status != 409:
                raise

        def served() -> bool:
            status, _ = self.http("GET", f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}")
            return status == 200

        wait_for(served, timeout=30, message="the Widget resource to be served")


def read_events(response: Any) -> Iterator[dict[str, Any]]:
    """Decode the newline-delimited JSON events of a watch stream."""
    buffer = b""
    for chunk in response.stream(1024, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
