"""The API client, the write counter, and the JSON and time helpers every I/O module shares."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from onload_operator.metrics import OperatorMetrics
from onload_operator.render import names

JsonObject = dict[str, Any]
"""An API object as decoded from a response."""
T = TypeVar("T")

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
CONNECTIONS = 16
"""Connections kept to the API server: node patches of one batch run in parallel."""


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
    configuration.connection_pool_maxsize = CONNECTIONS
    api_client = client.ApiClient(configuration)
    api_client.user_agent = names.MANAGER
    return api_client


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_of(response: Any) -> JsonObject:
    """The body of a response requested with ``_preload_content=False``."""
    data: JsonObject = json.loads(response.data)
    return data


def refusal_message(error: ApiException) -> str:
    """An API error as the server explained it: its message, the object (kind and name) and every field cause."""
    try:
        status = json.loads(error.body or "{}")
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    details = status.get("details") or {}
    kind, name = details.get("kind"), details.get("name")
    where = f" {kind} {name}:" if kind and name else ""
    message = status.get("message") or str(error.reason or "")
    causes = [
        f"{cause.get('field')}: {cause.get('message')}" for cause in details.get("causes") or [] if cause.get("field")
    ]
    unnamed = [cause for cause in causes if cause.partition(":")[0] not in message]
    fields = f" (fields: {'; '.join(causes)})" if unnamed else ""
    return f"API error {error.status}{where} {message}{fields}".strip()


class Kube:
    """The API groups the operator calls; every write goes through ``write`` so that it is counted."""

    def __init__(self, api_client: client.ApiClient, metrics: OperatorMetrics) -> None:
        self.api_client = api_client
        self.metrics = metrics
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        """Modules, DaemonSets (as ``apps/v1`` objects by plural) and the Onload CRs."""

    def write(self, verb: str, resource: str, call: Callable[[], T]) -> T:
        self.metrics.api_writes.labels(verb, resource).inc()
        return call()

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]
