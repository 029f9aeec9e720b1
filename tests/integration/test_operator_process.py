"""The ``onload-operator`` command and ``make sandbox``'s command, as processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from kubesim.polling import wait_for
from tests.integration.operator_harness import ROOT, onload_body, simulated_cluster


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_operator_refuses_to_start_without_device_plugin_image() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEVICE_PLUGIN_IMG"}
    result = subprocess.run(
        [sys.executable, "-m", "onload_operator"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 1
    assert "DEVICE_PLUGIN_IMG" in result.stderr


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


def test_operator_process_serves_liveness_metrics_and_json_logs(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path) as cluster:
        liveness, metrics = free_port(), free_port()
        env = {**os.environ, "DEVICE_PLUGIN_IMG": "dp:1", "KUBECONFIG": str(cluster.kubeconfig)}
        log_path = tmp_path / "operator.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "onload_operator",
                    f"--liveness=http://127.0.0.1:{liveness}/healthz",
                    f"--metrics-port={metrics}",
                    "--metrics-address=127.0.0.1",
                    "--log-format=json",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        try:
            cluster.create_onload(onload_body())
            cluster.wait_ready("onload", "onload", timeout=30)
            assert "reconcilers" in wait_for(lambda: get(f"http://127.0.0.1:{liveness}/healthz"))
            assert "onload_operator_ready" in get(f"http://127.0.0.1:{metrics}/metrics")
        finally:
            process.terminate()
            process.wait(timeout=30)
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        assert any("applied Module onload/onload-module" in r.get("message", "") for r in records)


def test_sandbox_command_reaches_ready(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hack.sandbox", "--exit-when-ready", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "Ready=True (AllNodesReady) nodes: 3 selected" in result.stdout
    assert f"kubectl --kubeconfig {(tmp_path / 'kubeconfig').resolve()} get onload -A" in result.stdout
    assert (tmp_path / "kubeconfig").exists()


def test_sandbox_with_a_node_count_labels_workers_and_says_where_things_are(tmp_path: Path) -> None:
    """`--nodes 2` makes two nodes without a role: both become workers, so the sample CR selects them; the
    kubeconfig path printed is absolute and the operator's log is in a file the output names."""
    result = subprocess.run(
        [sys.executable, "-m", "hack.sandbox", "--exit-when-ready", "--nodes", "2", "--dir", "sandbox"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Labelled node-0, node-1 as workers" in result.stdout
    assert "Ready=True (AllNodesReady) nodes: 2 selected" in result.stdout
    assert f"kubectl --kubeconfig {tmp_path / 'sandbox' / 'kubeconfig'} get onload -A" in result.stdout
    log = tmp_path / "sandbox" / "operator.log"
    assert f"The operator's log: {log}" in result.stdout
    assert "applied Module onload-sandbox/" in log.read_text()


def test_sandbox_serves_kubectl_until_interrupted(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    log_path = tmp_path / "sandbox.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hack.sandbox", "--dir", str(tmp_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_for(lambda: "Press Ctrl-C" in log_path.read_text(), timeout=60, message="the sandbox is Ready")
        table = subprocess.run(
            [kubectl, "--kubeconfig", str(tmp_path / "kubeconfig"), "get", "onload", "-A", "-o", "wide"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        header, row = table.splitlines()[:2]
        assert header.split()[:7] == ["NAMESPACE", "NAME", "VERSION", "READY", "NODES", "MODULE-READY", "PLUGIN-READY"]
        assert row.split()[:7] == ["onload-sandbox", "onload", "8.1.2.26", "True", "3", "3", "3"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Stopping." in log_path.read_text()
