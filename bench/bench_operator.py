"""Operator benchmarks against kubesim over HTTP (loopback only).

1. Time from creating an Onload CR to Ready (children present, every node labelled, module and device plugin
   ready) on 100 and 1,000 simulated nodes; the operator's API writes and reconciles on the way.
2. API writes per reconcile of a converged CR (each request reaching the API server is recorded with its user
   agent, so the operator's own requests are counted, kopf's included).
3. Resident memory of the operator process with 1,000 nodes, then with 10,000 pods added.

Run: .venv/bin/python bench/bench_operator.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubesim.controllers import ControllerSettings  # noqa: E402
from kubesim.polling import wait_for  # noqa: E402
from kubesim.simulator import Simulator  # noqa: E402
from onload_operator.api.v1alpha1 import GROUP, PLURAL, VERSION  # noqa: E402
from onload_operator.planner.status import READY, condition_of  # noqa: E402

NAMESPACE = "bench"
OPERATOR_AGENTS = ("kopf/", "onload-operator")
CONTROLLERS = ControllerSettings(pod_start_delay=0.02, pod_stop_delay=0.02, kmm_load_delay=0.05, kmm_unload_delay=0.02)


def onload_body() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Onload",
        "metadata": {"name": "onload", "namespace": NAMESPACE},
        "spec": {
            "selector": {"node-role.kubernetes.io/worker": ""},
            "serviceAccountName": "onload-sa",
            "onload": {
                "version": "8.1.2.26",
                "userImage": "onload-user:8.1.2.26",
                "kernelMappings": [{"regexp": r"^.*\.x86_64$", "kernelModuleImage": "onload-module:8.1.2.26"}],
            },
            "devicePlugin": {},
        },
    }


class Bench:
    """kubesim with a request counter, and API clients for it."""

    def __init__(self, nodes: int, workdir: Path, controllers: ControllerSettings = CONTROLLERS) -> None:
        self.requests: list[tuple[str, str]] = []
        self.sim = Simulator(
            nodes=f"worker-[0-{nodes - 1}]:labels=node-role.kubernetes.io/worker=",
            crds=[ROOT / "crds"],
            controllers=controllers,
        )

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests.append((request.headers.get("User-Agent", ""), request.method))
            response: web.StreamResponse = await handler(request)
            return response

        self.sim.server.app.middlewares.append(count)
        self.sim.start()
        self.kubeconfig = self.sim.write_kubeconfig(workdir / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        self.custom: Any = cast(Any, client.CustomObjectsApi(api_client))
        self.core: Any = cast(Any, client.CoreV1Api(api_client))
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})

    def operator_writes(self) -> int:
        return sum(1 for agent, method in self.requests if agent.startswith(OPERATOR_AGENTS) and method != "GET")

    def ready(self, nodes: int) -> bool:
        body = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "onload")
        status = body.get("status") or {}
        ready = condition_of(status, READY).get("status") == "True"
        return ready and (status.get("nodes") or {}).get("devicePluginReady") == nodes

    def stop(self) -> None:
        self.sim.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class OperatorProcess:
    """``python -m onload_operator`` against the bench cluster, in its own process as in a real deployment."""

    def __init__(self, bench: Bench, *options: str) -> None:
        self.metrics_port = free_port()
        env = {**os.environ, "DEVICE_PLUGIN_IMG": "dp:1", "KUBECONFIG": str(bench.kubeconfig)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "onload_operator",
                f"--metrics-port={self.metrics_port}",
                "--metrics-address=127.0.0.1",
                "--liveness=none",
                "--log-format=json",
                *options,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        wait_for(self.scrape, 60, "the operator's /metrics")

    def scrape(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        return {
            sample.name + str(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def reconciles(self, result: str) -> float:
        return self.scrape().get(f"onload_operator_reconciles_total[('result', '{result}')]", 0.0)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def create_to_ready(nodes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        bench = Bench(nodes, Path(workdir))
        operator = OperatorProcess(bench)
        try:
            started = time.monotonic()
            bench.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, onload_body())
            wait_for(lambda: bench.ready(nodes), 150, f"Ready on {nodes} nodes", interval=0.05)
            seconds = time.monotonic() - started
            reconciles = operator.reconciles("changed") + operator.reconciles("converged")
            writes_to_ready = bench.operator_writes()
            # Idle: wake the converged CR through label changes of selected nodes, count the operator's writes.
            idle_writes_before = bench.operator_writes()
            woken = 0
            for i in range(5):
                seen = operator.reconciles("converged")
                bench.core.patch_node(
                    f"worker-{i}",
                    {"metadata": {"labels": {"bench": str(i)}}},
                    _content_type="application/merge-patch+json",
                )
                wait_for(
                    partial(lambda before: operator.reconciles("converged") > before, seen), 30, "an idle reconcile"
                )
                woken += 1
            idle_writes = bench.operator_writes() - idle_writes_before
            rss = rss_kib(operator.process.pid)
        finally:
            operator.stop()
            bench.stop()
    return {
        "nodes": nodes,
        "seconds": seconds,
        "writes": writes_to_ready,
        "reconciles": reconciles,
        "idle_reconciles": woken,
        "idle_writes": idle_writes,
        "rss_kib": rss,
    }


def memory(nodes: int, pods: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as workdir:
        bench = Bench(nodes, Path(workdir))
        operator = OperatorProcess(bench)
        try:
            bench.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, onload_body())
            wait_for(lambda: bench.ready(nodes), 150, f"Ready on {nodes} nodes", interval=0.05)
            with_nodes = rss_kib(operator.process.pid)
            extra = pods - nodes  # the DaemonSet already runs one pod per node

            def create_pods() -> None:
                for i in range(extra):
                    bench.sim.store.create(
                        "v1/pods",
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": {"name": f"app-{i}", "namespace": NAMESPACE},
                            "spec": {
                                "nodeName": f"worker-{i % nodes}",
                                "containers": [{"name": "app", "image": "app"}],
                            },
                        },
                    )

            bench.sim.call(create_pods)
            total = len(bench.sim.call(bench.sim.store.list, "v1/pods"))
            # The operator watches no pods; a reconcile after the pods exist shows it is unaffected.
            seen = operator.reconciles("converged")
            bench.core.patch_node(
                "worker-0", {"metadata": {"labels": {"bench": "pods"}}}, _content_type="application/merge-patch+json"
            )
            wait_for(lambda: operator.reconciles("converged") > seen, 60, "a reconcile with the pods")
            with_pods = rss_kib(operator.process.pid)
        finally:
            operator.stop()
            bench.stop()
    return {"nodes": nodes, "pods": total, "rss_nodes_kib": with_nodes, "rss_pods_kib": with_pods}


def main() -> None:
    results = [create_to_ready(100), create_to_ready(1000)]
    mem = memory(1000, 10_000)
    print("## Operator\n")
    print("Command: `.venv/bin/python bench/bench_operator.py`. The operator runs as its own process")
    print("(`python -m onload_operator`) against kubesim over loopback HTTP (simulated KMM load 0.05 s, pod start")
    print("0.02 s); its writes are counted from the API server's request log by user agent, kopf's included;")
    print("reconciles are read from its `/metrics`. Idle: 5 node label changes that wake the converged CR.\n")
    print(
        "| nodes | create → Ready (s) | writes to Ready | reconciles to Ready | idle reconciles | idle writes "
        "| operator RSS (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['nodes']} | {r['seconds']:.2f} | {r['writes']} | {r['reconciles']:.0f} | {r['idle_reconciles']} | "
            f"{r['idle_writes']} | {r['rss_kib'] / 1024:.1f} |"
        )
    print()
    print("| operator process memory | RSS (MiB) |")
    print("|---|---:|")
    print(f"| {mem['nodes']} nodes, CR Ready | {mem['rss_nodes_kib'] / 1024:.1f} |")
    print(f"| {mem['nodes']} nodes and {mem['pods']} pods | {mem['rss_pods_kib'] / 1024:.1f} |")


if __name__ == "__main__":
    main()
