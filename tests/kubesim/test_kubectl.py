"""kubectl, used as a new user would, against ``python -m kubesim serve``."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from kubesim.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

MANIFESTS = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: demo}
data:
  mode: fast
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: registry.k8s.io/pause:3.9
        env:
        - {name: LEVEL, value: "1"}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubesim process with three nodes and the project's CRDs; yields its kubeconfig."""
    directory = tmp_path_factory.mktemp("kubesim-serve")
    kubeconfig = directory / "kubesim.kubeconfig"
    command = [sys.executable, "-m", "kubesim", "serve", "--nodes", "3", "--kubeconfig", str(kubeconfig)]
    if (REPO / "crds").is_dir():
        command += ["--crd", str(REPO / "crds")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(
            lambda: (kubeconfig.exists() and kubeconfig.stat().st_size > 0) or process.poll() is not None, timeout=30
        )
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        yield kubeconfig
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "kubesim serving at http://127.0.0.1:" in output


@pytest.fixture
def kubectl(served: Path) -> Kubectl:
    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        result = subprocess.run(
            [KUBECTL, *args],
            env={**os.environ, "KUBECONFIG": str(served)},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_get_nodes(kubectl: Kubectl) -> None:
    output = kubectl("get", "nodes").stdout.splitlines()
    assert output[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [line.split()[:2] for line in output[1:]] == [[f"node-{i}", "Ready"] for i in range(3)]


def test_apply_get_yaml_describe_and_delete(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(MANIFESTS)
    applied = kubectl("apply", "-f", str(manifest)).stdout
    assert "configmap/settings created" in applied
    assert "daemonset.apps/agent created" in applied
    assert "configmap/settings unchanged" in kubectl("apply", "-f", str(manifest)).stdout

    manifest.write_text(MANIFESTS.replace('value: "1"', 'value: "2"'))
    assert "daemonset.apps/agent configured" in kubectl("apply", "-f", str(manifest)).stdout
    daemonset = yaml.safe_load(kubectl("get", "daemonset", "agent", "-o", "yaml").stdout)
    assert daemonset["metadata"]["generation"] == 2
    assert daemonset["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "LEVEL", "value": "2"}]
    assert "kubectl.kubernetes.io/last-applied-configuration" in daemonset["metadata"]["annotations"]

    assert "successfully rolled out" in kubectl("rollout", "status", "daemonset/agent", "--timeout=60s").stdout
    wait_for(lambda: len(kubectl("get", "pods", "-l", "app=agent", "-o", "name").stdout.split()) == 3, timeout=30)
    described = kubectl("describe", "daemonset", "agent").stdout
    assert "Name:           agent" in described
    assert "Desired Number of Nodes Scheduled: 3" in described
    pod = kubectl("get", "pods", "-l", "app=agent", "-o", "name").stdout.split()[0]
    assert "Controlled By:  DaemonSet/agent" in kubectl("describe", pod).stdout
    assert "Non-terminated Pods:" in kubectl("describe", "node", "node-0").stdout

    deleted = kubectl("delete", "-f", str(manifest)).stdout
    assert 'configmap "settings" deleted' in deleted
    assert kubectl("get", "configmap", "settings", check=False).returncode != 0
    wait_for(lambda: kubectl("get", "pods", "-l", "app=agent", "-o", "name").stdout.strip() == "", timeout=30)


def test_apply_kustomization(kubectl: Kubectl, tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(MANIFESTS.split("---")[0])
    (tmp_path / "kustomization.yaml").write_text(
        "namespace: kustomized\nnamePrefix: k-\nlabels: [{pairs: {team: sim}}]\n"
        "resources: [namespace.yaml, base.yaml]\n"
    )
    (tmp_path / "namespace.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kustomized\n")
    applied = kubectl("apply", "-k", str(tmp_path)).stdout
    assert "namespace/kustomized created" in applied
    assert "configmap/k-settings created" in applied
    labels = kubectl("get", "cm", "k-settings", "-n", "kustomized", "-o", "jsonpath={.metadata.labels.team}").stdout
    assert labels == "sim"
    kubectl("delete", "-k", str(tmp_path))


@pytest.mark.skipif(not (REPO / "crds" / "kustomization.yaml").exists(), reason="the project CRDs are absent")
def test_apply_the_project_crds_and_get_onload_printer_columns(kubectl: Kubectl) -> None:
    kubectl("apply", "-k", str(REPO / "crds"))
    assert "onloads" in kubectl("api-resources", "--api-group=onload.amd.com").stdout
    samples = REPO / "config" / "samples" / "onload" / "base"
    if not (samples / "kustomization.yaml").exists():
        pytest.skip("no Onload sample")
    kubectl("apply", "-k", str(samples))
    header = kubectl("get", "onload", "-A").stdout.splitlines()[0].split()
    assert header[:4] == ["NAMESPACE", "NAME", "VERSION", "READY"]
    assert "MODULE-READY" in header
    assert "REASON" in kubectl("get", "onl", "-A", "-o", "wide").stdout.splitlines()[0]
    explained = kubectl("explain", "onload.spec").stdout
    assert "FIELD: spec <Object>" in explained
    kubectl("delete", "-k", str(samples))


@pytest.mark.skipif(not (REPO / "config" / "default" / "kustomization.yaml").exists(), reason="no config/default")
def test_apply_the_operator_deployment_tree(kubectl: Kubectl) -> None:
    applied = kubectl("apply", "-k", str(REPO / "config" / "default")).stdout
    assert "created" in applied or "configured" in applied or "unchanged" in applied
    kinds = {line.split("/")[0] for line in applied.splitlines()}
    assert "customresourcedefinition.apiextensions.k8s.io" in kinds
    listed = kubectl("get", "-k", str(REPO / "config" / "default"), "-o", "name").stdout.split()
    assert len(listed) == len(applied.splitlines())


def test_server_side_apply_and_patch(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    kubectl("patch", "configmap", "ssa", "--type=merge", "-p", '{"data":{"b":"2"}}')
    kubectl("patch", "configmap", "ssa", "--type=json", "-p", '[{"op":"replace","path":"/data/a","value":"3"}]')
    data = yaml.safe_load(kubectl("get", "configmap", "ssa", "-o", "yaml").stdout)["data"]
    assert data == {"a": "3", "b": "2"}
    refused = kubectl(
        "patch", "configmap", "ssa", "--type=json", "-p", '[{"op":"test","path":"/data/a","value":"0"}]', check=False
    )
    assert refused.returncode != 0
    kubectl("delete", "configmap", "ssa")


def test_errors_read_like_a_cluster(kubectl: Kubectl) -> None:
    missing = kubectl("get", "configmap", "does-not-exist", check=False)
    assert missing.returncode != 0
    assert 'configmaps "does-not-exist" not found' in missing.stderr


def test_create_subcommands_that_send_protobuf(kubectl: Kubectl) -> None:
    assert kubectl("create", "namespace", "made-by-kubectl").stdout.strip() == "namespace/made-by-kubectl created"
    namespace = ("-n", "made-by-kubectl")
    kubectl("create", "configmap", "cm", "--from-literal=mode=fast", "--from-literal=size=3", *namespace)
    kubectl("create", "secret", "generic", "token", "--from-literal=key=s3cret", *namespace)
    kubectl("create", "serviceaccount", "robot", *namespace)
    data = kubectl("get", "configmap", "cm", "-o", "jsonpath={.data}", *namespace).stdout
    assert yaml.safe_load(data) == {"mode": "fast", "size": "3"}
    secret = kubectl("get", "secret", "token", "-o", "jsonpath={.data.key}", *namespace).stdout
    assert secret == "czNjcmV0"  # base64 of s3cret
    assert kubectl("get", "serviceaccount", "robot", "-o", "name", *namespace).stdout.strip() == "serviceaccount/robot"
    refused = kubectl("create", "deployment", "web", "--image=nginx", *namespace, check=False)
    assert refused.returncode != 0
    assert "kubectl create -f or kubectl apply -f" in refused.stderr


def test_logs_say_the_pod_is_simulated_and_events_list(kubectl: Kubectl) -> None:
    kubectl("run", "lonely", "--image=registry.k8s.io/pause:3.9")  # no scheduler here: it stays Pending
    assert kubectl("logs", "lonely").stdout == (
        "kubesim: pod default/lonely (container lonely) is simulated: "
        "its containers are never run, so there is no log\n"
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "lonely.1"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "lonely", "namespace": "default"},
        "reason": "Poked",
        "message": "poked by the test",
        "type": "Normal",
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    }
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(event))
    events = kubectl("get", "events").stdout.splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(line.split()[1:4] == ["Normal", "Poked", "pod/lonely"] for line in events[1:])
    kubectl("delete", "pod", "lonely", "--wait=false")
