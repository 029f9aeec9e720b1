"""The worker's pod reader: which server and credentials it takes from a pod's service account or a kubeconfig."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from device_plugin import podapi
from device_plugin.podapi import ApiConfigError, in_cluster_endpoint, kubeconfig_endpoint


def write_kubeconfig(path: Path, cluster: str, user: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
        f"clusters: [{{name: c, cluster: {cluster}}}]\n"
        f"users: [{{name: u, user: {user}}}]\n"
        "contexts: [{name: other, context: {cluster: missing}}, {name: dev, context: {cluster: c, user: u}}]\n"
    )
    return path


def test_kubeconfig_current_context_with_a_token(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", "{server: 'http://127.0.0.1:1/'}", "{token: abc}")
    endpoint = kubeconfig_endpoint(config)
    assert endpoint.server == "http://127.0.0.1:1"
    assert endpoint.ssl_context is None
    assert endpoint.bearer_token() == "abc"


def test_kubeconfig_token_file_is_relative_to_the_kubeconfig_and_read_each_time(tmp_path: Path) -> None:
    config = write_kubeconfig(
        tmp_path / "kubeconfig", "{server: 'https://api:6443', insecure-skip-tls-verify: true}", "{tokenFile: token}"
    )
    (tmp_path / "token").write_text("first\n")
    endpoint = kubeconfig_endpoint(config)
    assert endpoint.bearer_token() == "first"
    (tmp_path / "token").write_text("rotated\n")
    assert endpoint.bearer_token() == "rotated"
    assert endpoint.ssl_context is not None
    assert endpoint.ssl_context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nkind: Config\n", "no current-context"),
        ("current-context: dev\ncontexts: []\n", "no context named 'dev'"),
        (
            "current-context: dev\ncontexts: [{name: dev, context: {cluster: c}}]\n"
            "clusters: [{name: c, cluster: {}}]\n",
            "has no server",
        ),
        ("current-context: [", "cannot read kubeconfig"),
    ],
)
def test_unusable_kubeconfig_is_named_in_the_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(text)
    with pytest.raises(ApiConfigError, match=message):
        kubeconfig_endpoint(config)


def test_in_cluster_needs_the_service_environment_and_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podapi, "SERVICE_ACCOUNT_DIR", tmp_path)
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_endpoint(environ) is None  # no token yet
    assert in_cluster_endpoint({}) is None
    (tmp_path / "token").write_text("sa-token")
    # A CA file the ssl module accepts: the system bundle stands in for the service account's.
    (tmp_path / "ca.crt").write_bytes(Path(ssl.get_default_verify_paths().openssl_cafile).read_bytes())
    endpoint = in_cluster_endpoint(environ)
    assert endpoint is not None
    assert endpoint.server == "https://[fd00::1]:443"
    assert endpoint.bearer_token() == "sa-token"
