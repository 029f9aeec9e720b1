"""The README's steps to replace the Go operator's Deployment, whose immutable selector differs from this one's,
followed with kubectl against kubesim."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.operator_harness import simulated_cluster

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
NAMESPACE = "onload-operator-system"
DEPLOYMENT = "onload-operator-controller-manager"
GO_LABELS = "{control-plane: controller-manager, app.kubernetes.io/part-of: onload}"
GO_DEPLOYMENT = f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {DEPLOYMENT}
  namespace: {NAMESPACE}
  labels: {GO_LABELS}
spec:
  replicas: 1
  selector:
    matchLabels: {GO_LABELS}
  template:
    metadata:
      labels: {GO_LABELS}
    spec:
      containers:
      - name: manager
        image: docker.io/onload/onload-operator:3.0.0
        command: [/manager]
        args: [--leader-elect]
        env:
        - {{name: DEVICE_PLUGIN_IMG, value: "docker.io/onload/onload-device-plugin:3.0.0"}}
"""


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_the_go_operator_deployment_is_replaced_as_the_readme_says(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path) as cluster:

        def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            assert KUBECTL is not None
            environment = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
            return subprocess.run(
                [KUBECTL, *args], env=environment, input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO
            )

        assert kubectl("apply", "-f", "-", stdin=GO_DEPLOYMENT).returncode == 0
        refused = kubectl("apply", "-k", "config/default")
        assert refused.returncode != 0
        assert "field is immutable" in refused.stderr
        # The steps of the README's "Taking over from the Go operator".
        deleted = kubectl("-n", NAMESPACE, "delete", "deployment", DEPLOYMENT)
        assert deleted.returncode == 0, deleted.stderr
        applied = kubectl("apply", "-k", "config/default")
        assert applied.returncode == 0, applied.stderr
        deployment = cluster.apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
        assert deployment.spec.selector.match_labels == {
            "app.kubernetes.io/name": "onload-operator",
            "app.kubernetes.io/component": "manager",
        }
        environment = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
        assert environment["DEVICE_PLUGIN_IMG"].startswith("docker.io/onload/onload-device-plugin-py:")
