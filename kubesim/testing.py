"""pytest plugin: a fresh simulated cluster per test, reachable through a kubeconfig.

Enable it with ``pytest_plugins = ["kubesim.testing"]``. Fixtures:

- ``kubesim``: a running :class:`KubesimCluster` (``.url``, ``.kubeconfig``, ``.sim``); ``KUBECONFIG`` points at
  it for the test, so ``kubernetes.config.load_kube_config()``, kopf and kubectl all talk to it.
- ``kubesim_namespace``: the name of a fresh namespace in it.
- ``wait_for``: the :func:`wait_for` poll helper.

Options come from the ``kubesim_options`` marker, e.g.
``@pytest.mark.kubesim_options(nodes="worker-[0-2]:kernel=5.14.0", controllers=ControllerSettings(kmm=False))``;
its keyword arguments are those of :class:`kubesim.simulator.Simulator`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.config import kube_config

from kubesim.polling import wait_for
from kubesim.simulator import KmmFaults, Simulator
from kubesim.store import EvictedPod

T = TypeVar("T")


@dataclass
class KubesimCluster:
    """A running simulator as a test sees it."""

    sim: Simulator
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.sim.url

    @property
    def store(self) -> Any:
        return self.sim.store

    @property
    def kmm(self) -> KmmFaults:
        """``fail_load(node, version)`` / ``clear_load_failure(node, version)`` of the simulated KMM."""
        return self.sim.kmm

    def evictions(self) -> dict[EvictedPod, int]:
        """Successful evictions per pod (namespace, name, uid)."""
        return self.sim.evictions()

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.sim.call(function, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kubesim_options(**kwargs): keyword arguments for the Simulator of the kubesim fixture"
    )


def _point_kubernetes_client_at(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The official client reads KUBECONFIG once, at import; also make the config its default for the test
    (the previous default is restored afterwards)."""
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.setattr(client.Configuration, "_default", client.Configuration._default)
    config.load_kube_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]


@pytest.fixture
def kubesim(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KubesimCluster]:
    marker = request.node.get_closest_marker("kubesim_options")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    sim = Simulator(**options).start()
    try:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubesim.kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        _point_kubernetes_client_at(kubeconfig, monkeypatch)
        yield KubesimCluster(sim=sim, kubeconfig=kubeconfig)
    finally:
        sim.stop()


@pytest.fixture
def kubesim_namespace(kubesim: KubesimCluster) -> str:
    name = f"test-{uuid.uuid4().hex[:8]}"
    kubesim.call(kubesim.sim.store.create, "v1/namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for
