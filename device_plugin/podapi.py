"""Read one pod from the Kubernetes API with the standard library (the worker's container-id lookup).

The device-plugin image carries no Kubernetes client, which with its dependencies is larger than the rest of
the image, for this one GET. In a pod the service account's token and CA are used; elsewhere (development) the
current context of $KUBECONFIG: its server, CA and a token or a client certificate.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiConfigError(Exception):
    """Neither an in-cluster service account nor a usable kubeconfig."""


@dataclass(frozen=True)
class ApiEndpoint:
    server: str
    ssl_context: ssl.SSLContext | None = None
    token: str | None = None
    # Read at each request: a projected service-account token is rotated by the kubelet.
    token_file: Path | None = None

    def bearer_token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token


def in_cluster_endpoint(environ: dict[str, str] | None = None) -> ApiEndpoint | None:
    environ = dict(os.environ) if environ is None else environ
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (SERVICE_ACCOUNT_DIR / "token").exists():
        return None
    host = f"[{host}]" if ":" in host else host
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
    return ApiEndpoint(f"https://{host}:{port}", context, token_file=SERVICE_ACCOUNT_DIR / "token")


def _named(items: list[dict[str, Any]], name: str, kind: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            entry: dict[str, Any] = item.get(kind) or {}
            return entry
    raise ApiConfigError(f"{path}: no {kind} named {name!r}")


def _pem_file(data: str, directory: str) -> str:
    """Write base64 PEM data (a kubeconfig's ``*-data`` field) to a file, as ``ssl`` loads certificates from files."""
    handle, name = tempfile.mkstemp(dir=directory)
    with os.fdopen(handle, "wb") as file:
        file.write(base64.b64decode(data))
    return name


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif "certificate-authority-data" in cluster:
        ca_data = base64.b64decode(cluster["certificate-authority-data"]).decode()
        context = ssl.create_default_context(cadata=ca_data)
    elif "certificate-authority" in cluster:
        context = ssl.create_default_context(cafile=str(base / cluster["certificate-authority"]))
    else:
        context = ssl.create_default_context()
    with tempfile.TemporaryDirectory() as directory:
        cert = user.get("client-certificate") and str(base / user["client-certificate"])
        key = user.get("client-key") and str(base / user["client-key"])
        if "client-certificate-data" in user:
            cert = _pem_file(user["client-certificate-data"], directory)
        if "client-key-data" in user:
            key = _pem_file(user["client-key-data"], directory)
        if cert:
            context.load_cert_chain(cert, key or None)
    return context


def kubeconfig_endpoint(path: Path) -> ApiEndpoint:
    """The server and credentials of the current context of a kubeconfig file."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ApiConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    current = document.get("current-context")
    if not current:
        raise ApiConfigError(f"{path}: no current-context")
    context = _named(document.get("contexts", []), current, "context", path)
    cluster = _named(document.get("clusters", []), context.get("cluster", ""), "cluster", path)
    user = _named(document.get("users", []), context.get("user", ""), "user", path) if context.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise ApiConfigError(f"{path}: cluster {context.get('cluster')!r} has no server")
    base = path.parent
    ssl_context = _ssl_context(cluster, user, base) if server.startswith("https:") else None
    token_file = base / user["tokenFile"] if "tokenFile" in user else None
    return ApiEndpoint(server.rstrip("/"), ssl_context, token=user.get("token"), token_file=token_file)


def default_endpoint() -> ApiEndpoint:
    """In a pod, its service account; otherwise the first file of $KUBECONFIG, else ~/.kube/config."""
    endpoint = in_cluster_endpoint()
    if endpoint is not None:
        return endpoint
    configured = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return kubeconfig_endpoint(Path(configured) if configured else Path.home() / ".kube" / "config")


def read_pod(endpoint: ApiEndpoint, namespace: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
    quoted = f"{urllib.parse.quote(namespace, safe='')}/pods/{urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(f"{endpoint.server}/api/v1/namespaces/{quoted}")
    request.add_header("Accept", "application/json")
    token = endpoint.bearer_token()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout, context=endpoint.ssl_context) as response:
        pod: dict[str, Any] = json.load(response)
    return pod
