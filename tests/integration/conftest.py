"""Integration tests: the real operator (kopf, in a thread) against kubesim over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.operator_harness import Cluster, simulated_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three worker nodes and the operator running."""
    with simulated_cluster(tmp_path) as running:
        running.start_operator()
        yield running
