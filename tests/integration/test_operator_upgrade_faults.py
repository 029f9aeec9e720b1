"""Fault injection: the operator process is SIGKILLed at every step boundary of the node-by-node upgrade.

kubesim sees each write the operator sends. The first time a node patch announces a step not seen before (and the
first time a pod is evicted), the operator is killed with SIGKILL: in one run before the write reaches the store,
in the other right after it was stored, before the operator hears the answer; then it is started again. The upgrade must
finish with no pod evicted twice, no node left tainted or without its device plugin, and no version skew at any
moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import ROOT, Cluster, Intercepted, onload_body, simulated_cluster
from tests.integration.upgrade_support import (
    APPS,
    NAME,
    NEW,
    NS,
    Watcher,
    complete,
    pods_ready,
    upgrade_spec,
    workload,
)

WORKERS = "worker-[0-2]:labels=node-role.kubernetes.io/worker="


@dataclass
class Killer:
    """Kills the operator at each new step boundary it writes, before or after the write lands."""

    tmp_path: Path
    cluster: Cluster
    after_write: bool
    process: subprocess.Popen[bytes] | None = None
    boundaries: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    armed: bool = False
    starts: int = 0

    def start(self) -> None:
        env = {**os.environ, "DEVICE_PLUGIN_IMG": "dp:1", "KUBECONFIG": str(self.cluster.kubeconfig)}
        log = (self.tmp_path / f"operator-{self.starts}.log").open("wb")
        self.starts += 1
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "onload_operator",
                "--liveness=none",
                "--metrics-port=-1",
                "--log-format=plain",
                "--recheck-seconds=0.1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()

    def boundary(self, request: Intercepted) -> str | None:
        """The step boundary a request of the operator crosses, if any."""
        if request.agent != names.MANAGER or request.method not in {"PATCH", "POST"}:
            return None
        if request.path.endswith("/eviction"):
            return f"evict {request.path.split('/')[-2]}"
        if request.method != "PATCH" or not request.path.startswith("/api/v1/nodes/"):
            return None
        body = json.loads(request.body or b"{}")
        annotation = ((body.get("metadata") or {}).get("annotations") or {}).get(names.UPGRADE_ANNOTATION, "")
        if annotation is None:
            return f"{request.path} released"
        step = json.loads(annotation).get("step") if annotation else None
        return f"{request.path} {step}" if step else None

    def intercept(self, request: Intercepted) -> bool:
        """Called by kubesim before each request; True lets the write happen after the kill."""
        point = self.boundary(request)
        if not self.armed or point is None or point in self.seen:
            return True
        self.seen.add(point)
        self.boundaries.append(point)
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        if not self.after_write:
            raise web.HTTPServiceUnavailable(text="the operator was killed before this write")
        return True

    def restart_when_dead(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(params=["before", "after"], ids=lambda when: f"killed-{when}-the-write")
def killer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Killer]:
    with simulated_cluster(tmp_path, nodes=WORKERS) as cluster:
        killer = Killer(tmp_path, cluster, after_write=request.param == "after")
        cluster.interceptors.append(killer.intercept)
        killer.start()
        try:
            yield killer
        finally:
            killer.stop()


def test_sigkill_at_every_step_boundary(killer: Killer) -> None:
    cluster = killer.cluster
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, NAME, timeout=60, selected=3, devicePluginReady=3)
    cluster.core.create_namespace({"metadata": {"name": APPS}})
    for index in range(3):
        workload(cluster, f"worker-{index}", f"trader-{index}")
    wait_for(lambda: pods_ready(cluster, 3), message="the workloads to run")
    killer.armed = True
    cluster.patch_onload(NS, NAME, upgrade_spec())
    watcher = Watcher(cluster)

    def finished() -> bool:
        killer.restart_when_dead()
        return complete(cluster, NEW, 3)

    watcher.until(finished, timeout=240, message="the upgrade to finish through the kills")
    steps = {point.split(" ", 1)[1] for point in killer.boundaries if point.startswith("/api")}
    assert {"StopDevicePlugin", "EvictPods", "LoadModules", "StartDevicePlugin", "released"} <= steps
    assert len(killer.boundaries) >= 8, killer.boundaries
    # Restarted after every kill (after the last one only if the rollout still needed it: writes sent in parallel
    # with the refused one may have finished it).
    assert killer.starts >= len(killer.boundaries)
    assert any(point.startswith("evict ") for point in killer.boundaries)
    evictions: dict[Any, int] = cluster.sim.evictions()
    assert sorted(pod.name for pod in evictions) == ["trader-0", "trader-1", "trader-2"]
    assert set(evictions.values()) == {1}
    cluster.wait_ready(NS, NAME, timeout=60, selected=3, devicePluginReady=3)
