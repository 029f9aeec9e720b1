"""Fixtures for kubesim's own tests.

The contract tests (``test_contract_*.py``, marked ``realcluster``) talk to the API over HTTP only, through the
``cluster`` fixture: a fresh kubesim by default, or the real cluster of the kubeconfig named by
``KUBESIM_CONTRACT_KUBECONFIG``. Tests that need kubesim's own hooks (history compaction, faults) use
``cluster.require_sim()`` and are skipped against a real cluster.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from kubesim.simulator import Simulator
from tests.kubesim.contract_support import (
    REAL_CLUSTER_KUBECONFIG,
    WIDGET_CRD_NAME,
    WIDGET_GROUP,
    WIDGET_PLURAL,
    WIDGET_VERSION,
    Cluster,
)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if REAL_CLUSTER_KUBECONFIG:
        api = config.new_client_from_config(config_file=REAL_CLUSTER_KUBECONFIG)  # type: ignore[no-untyped-call]
        real = Cluster(api=api, sim=None)
        try:
            if request.node.get_closest_marker("core_kinds") is not None:
                real.require_core_kinds()
            yield real
        finally:
            for name in real.namespaces:
                real.core.delete_namespace(name)
            if real.created_widget_crd:
                real.http("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{WIDGET_CRD_NAME}")
        return
    sim = Simulator(nodes=2, bookmark_interval=0.2).start()
    try:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        try:
            yield Cluster(api=api, sim=sim)
        finally:
            api.close()
    finally:
        sim.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    return cluster.namespace()


@pytest.fixture
def widgets(cluster: Cluster, namespace: str) -> str:
    """The URL of the Widgets of the test's namespace (the Widget CRD is created first)."""
    cluster.widget_crd()
    return f"/apis/{WIDGET_GROUP}/{WIDGET_VERSION}/namespaces/{namespace}/{WIDGET_PLURAL}"
