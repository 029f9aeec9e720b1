"""`onload-operator` outside a cluster and without a kubeconfig says so, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("kubeconfig_args", [[], ["--kubeconfig", "missing-kubeconfig"]])
def test_no_kubeconfig_is_a_clear_message(tmp_path: Path, kubeconfig_args: list[str]) -> None:
    environ = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    environ |= {"HOME": str(tmp_path), "DEVICE_PLUGIN_IMG": "example/device-plugin:1"}
    result = subprocess.run(
        [sys.executable, "-m", "onload_operator", "--liveness", "none", "--metrics-port", "-1", *kubeconfig_args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "onload-operator: no Kubernetes API to connect to" in result.stderr
    assert "--kubeconfig or KUBECONFIG" in result.stderr
