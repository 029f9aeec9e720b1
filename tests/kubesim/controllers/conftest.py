"""Fixtures for the simulated-controller tests: a fake store (events delivered synchronously or on the next loop
iteration) and controllers started against it with short delays."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from kubesim.controllers import Controllers, ControllerSettings, start_controllers
from kubesim.store import Store
from tests.kubesim.controllers.sim_fake_store import FakeStore

CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
MODULE_CRD = Path(__file__).parents[3] / "kubesim" / "crds" / "kmm.sigs.x-k8s.io_modules.yaml"

FAST = ControllerSettings(pod_start_delay=0.01, pod_stop_delay=0.01, kmm_load_delay=0.02, kmm_unload_delay=0.01)


@pytest.fixture(params=["fake-sync-events", "fake-async-events", "real-store"])
def store(request: pytest.FixtureRequest) -> FakeStore:
    """The fake store delivering events inside writes or on the next loop iteration, or kubesim's real store."""
    if request.param != "real-store":
        return FakeStore(synchronous_events=request.param == "fake-sync-events")
    real = Store(graceful_pod_deletion=True)
    for namespace in ("default", "onload"):
        if real.get("v1/namespaces", None, namespace) is None:
            real.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    real.create(CRDS, yaml.safe_load(MODULE_CRD.read_text()))
    return real  # type: ignore[return-value]  # the tests use only the ObjectStore methods


@pytest.fixture
async def controllers(store: FakeStore) -> AsyncIterator[Controllers]:
    running = start_controllers(store, FAST)
    yield running
    running.stop()
