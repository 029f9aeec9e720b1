"""The pytest fixture, the official client's default configuration, and a real kopf operator against kubesim."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client, config

from kubesim.polling import wait_for
from kubesim.testing import KubesimCluster

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.fixture.kubesim.test
spec:
  group: fixture.kubesim.test
  scope: Namespaced
  names: {kind: Gadget, plural: gadgets, singular: gadget, listKind: GadgetList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 1}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""

OPERATOR = """
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.watching.server_timeout = 5
    settings.posting.level = 20

@kopf.on.create("fixture.kubesim.test", "v1", "gadgets")
def created(body, spec, patch, **_):
    kopf.info(body, reason="Seen", message="gadget seen")
    patch.status["seen"] = spec["size"]

@kopf.on.update("fixture.kubesim.test", "v1", "gadgets", field="spec.size")
def resized(new, patch, **_):
    patch.status["seen"] = new

@kopf.on.delete("fixture.kubesim.test", "v1", "gadgets")
def deleted(**_):
    pass
"""


def test_fixture_points_kubeconfig_and_the_default_client_at_kubesim(kubesim: KubesimCluster) -> None:
    assert os.environ["KUBECONFIG"] == str(kubesim.kubeconfig)
    assert kubesim.url.startswith("http://127.0.0.1:")
    names = [n.metadata.name for n in client.CoreV1Api().list_namespace().items if n.metadata]
    assert "default" in names
    config.load_kube_config()  # type: ignore[no-untyped-call]
    assert client.Configuration.get_default_copy().host == kubesim.url


def test_namespace_fixture_gives_a_fresh_namespace(kubesim: KubesimCluster, kubesim_namespace: str) -> None:
    namespace = client.CoreV1Api().read_namespace(kubesim_namespace)
    assert namespace.status is not None
    assert namespace.status.phase == "Active"
    assert kubesim_namespace.startswith("test-")


@pytest.mark.kubesim_options(nodes="worker-[0-1]:kernel=6.1.0", run_controllers=False)
def test_options_marker_configures_the_simulator(kubesim: KubesimCluster) -> None:
    nodes = client.CoreV1Api().list_node().items
    assert [n.metadata.name for n in nodes if n.metadata] == ["worker-0", "worker-1"]
    assert kubesim.sim.controllers is None


def test_call_runs_on_the_simulator_loop(kubesim: KubesimCluster) -> None:
    created = kubesim.call(
        kubesim.sim.store.create, "v1/configmaps", {"metadata": {"name": "c", "namespace": "default"}}
    )
    fetched = client.CoreV1Api().read_namespaced_config_map("c", "default")
    assert fetched.metadata is not None
    assert fetched.metadata.uid == created["metadata"]["uid"]


def test_kopf_operator_runs_against_kubesim(kubesim: KubesimCluster, kubesim_namespace: str, tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(WIDGET_CRD)
    kubesim.sim.register_crd(crd)
    operator = tmp_path / "operator.py"
    operator.write_text(textwrap.dedent(OPERATOR))
    custom: Any = client.CustomObjectsApi()
    coordinates = ("fixture.kubesim.test", "v1", kubesim_namespace, "gadgets")
    with KopfRunner(["run", "--standalone", "-A", str(operator)], timeout=60) as runner:
        custom.create_namespaced_custom_object(
            *coordinates,
            {"apiVersion": "fixture.kubesim.test/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 3}},
        )

        def seen(size: int) -> bool:
            body = custom.get_namespaced_custom_object(*coordinates, "g")
            return bool((body.get("status") or {}).get("seen") == size)

        wait_for(lambda: seen(3), timeout=30)
        body = custom.get_namespaced_custom_object(*coordinates, "g")
        assert "kopf.zalando.org/KopfFinalizerMarker" in body["metadata"]["finalizers"]
        custom.patch_namespaced_custom_object(*coordinates, "g", {"spec": {"size": 4}})
        wait_for(lambda: seen(4), timeout=30)

        def event_posted() -> bool:
            events = client.CoreV1Api().list_namespaced_event(kubesim_namespace).items
            return any(e.involved_object.name == "g" and e.reason == "Seen" for e in events)

        wait_for(event_posted, timeout=30)
        custom.delete_namespaced_custom_object(*coordinates, "g")

        def deleted() -> bool:
            try:
                custom.get_namespaced_custom_object(*coordinates, "g")
            except client.ApiException as error:
                return bool(error.status == 404)
            return False

        wait_for(deleted, timeout=30)
    assert runner.exit_code == 0
    assert runner.exception is None


def test_cli_reports_a_bad_node_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubesim", "serve", "--node-spec", "worker-[0-", "--kubeconfig", os.devnull],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("kubesim: ")


def test_kopf_operator_converges_despite_injected_faults(
    kubesim: KubesimCluster, kubesim_namespace: str, tmp_path: Path
) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(WIDGET_CRD)
    kubesim.sim.register_crd(crd)
    operator = tmp_path / "operator.py"
    operator.write_text(textwrap.dedent(OPERATOR))
    custom: Any = client.CustomObjectsApi()
    coordinates = ("fixture.kubesim.test", "v1", kubesim_namespace, "gadgets")
    kubesim.sim.faults.update(
        {"errorRate": 0.5, "errorCodes": [500, 429], "verbs": ["patch"], "resources": ["gadgets"]}
    )
    with KopfRunner(["run", "--standalone", "-A", str(operator)], timeout=60) as runner:
        custom.create_namespaced_custom_object(
            *coordinates,
            {"apiVersion": "fixture.kubesim.test/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 2}},
        )

        def seen() -> bool:
            body = custom.get_namespaced_custom_object(*coordinates, "g")
            return bool((body.get("status") or {}).get("seen") == 2)

        wait_for(seen, timeout=45)
        kubesim.sim.faults.update({"errorRate": 0.0})
    assert runner.exception is None
    assert kubesim.sim.faults.injected > 0
