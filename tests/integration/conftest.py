"""Integration tests: the real operator (kopf, in a thread) against kubesim over HTTP."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite imports test modules in importlib mode; the shared helpers are imported as ``tests.<dir>.<module>``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.operator_harness import Cluster, simulated_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three worker nodes and the operator running."""
    with simulated_cluster(tmp_path) as running:
        running.start_operator()
        yield running
