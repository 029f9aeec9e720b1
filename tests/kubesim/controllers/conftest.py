"""Fixtures for the simulated-controller tests: a fake store (events delivered synchronously or on the next loop
iteration) and controllers started against it with short delays."""

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# The suite imports test modules in importlib mode; the shared helpers of this directory are plain modules.
sys.path.insert(0, str(Path(__file__).parent))

from sim_fake_store import FakeStore

from kubesim.controllers import Controllers, ControllerSettings, start_controllers

FAST = ControllerSettings(pod_start_delay=0.01, pod_stop_delay=0.01, kmm_load_delay=0.02, kmm_unload_delay=0.01)


@pytest.fixture(params=["sync-events", "async-events"])
def store(request: pytest.FixtureRequest) -> FakeStore:
    return FakeStore(synchronous_events=request.param == "sync-events")


@pytest.fixture
async def controllers(store: FakeStore) -> AsyncIterator[Controllers]:
    running = start_controllers(store, FAST)
    yield running
    running.stop()
