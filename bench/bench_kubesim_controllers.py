"""Throughput of kubesim's simulated controllers at 5,000 nodes and 50,000 pods, in one process.

Runs the controllers against kubesim's object store with zero simulated delays and measures how long the
cluster takes to converge after each change, plus the cost of single node events once the cluster is full.
"""

import asyncio
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from kubesim.controllers import ControllerSettings, start_controllers
from kubesim.nodes import nodes_from_spec
from kubesim.objectstore import WatchEvent
from kubesim.store import Store

NODES = 5_000
PODS_PER_NODE = 10  # one daemon pod plus nine others
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
MODULES = "kmm.sigs.x-k8s.io/v1beta1/modules"
CRD_FILE = Path(__file__).resolve().parents[1] / "kubesim" / "crds" / "kmm.sigs.x-k8s.io_modules.yaml"
READY = "kmm.node.kubernetes.io/onload.onload-module.ready"
VERSION = "kmm.node.kubernetes.io/version-module.onload.onload-module"
VERSION_READY = "kmm.node.kubernetes.io/onload.onload-module.version.ready"
TIMEOUT = 150.0


async def converge(predicate: Callable[[], bool], what: str) -> float:
    """Seconds until ``predicate`` holds, polling every 10 ms (the loop keeps running the controllers)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > TIMEOUT:
            raise SystemExit(f"benchmark step did not converge within {TIMEOUT}s: {what}")
        await asyncio.sleep(0.01)
    return time.perf_counter() - start


class PodCounter:
    """Running pods by name prefix, kept from store events so that polling costs nothing."""

    def __init__(self, store: Store) -> None:
        self.running: dict[str, str] = {}
        store.subscribe("v1/pods", self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        pod = event["object"]
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        if event["type"] != "DELETED" and pod["status"].get("phase") == "Running":
            self.running[key] = pod["spec"]["containers"][0]["image"]
        else:
            self.running.pop(key, None)

    def count(self, image: str | None = None) -> int:
        if image is None:
            return len(self.running)
        return sum(1 for value in self.running.values() if value == image)


async def main() -> None:
    store = Store(graceful_pod_deletion=True)
    store.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    store.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "onload"}})
    store.create(CRDS, yaml.safe_load(CRD_FILE.read_text()))
    settings = ControllerSettings(pod_start_delay=0, pod_stop_delay=0, kmm_load_delay=0, kmm_unload_delay=0)
    controllers = start_controllers(store, settings)
    pods = PodCounter(store)
    rows: list[tuple[str, str, str]] = []

    start = time.perf_counter()
    for node in nodes_from_spec(f"node-[0-{NODES - 1}]:labels=node-role.kubernetes.io/worker="):
        store.create("v1/nodes", node)
    elapsed = time.perf_counter() - start
    rows.append((f"create {NODES} nodes", f"{elapsed:.2f} s", f"{NODES / elapsed:,.0f} nodes/s"))

    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "bench"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
        },
    }
    store.create("apps/v1/daemonsets", daemonset)

    def ds_status() -> dict[str, int]:
        found = store.get("apps/v1/daemonsets", "bench", "agent")
        assert found is not None
        status: dict[str, int] = found.get("status") or {}
        return status

    elapsed = await converge(
        lambda: pods.count("agent:1") == NODES and ds_status().get("numberAvailable") == NODES, "daemon pods"
    )
    rows.append(
        (
            f"DaemonSet: {NODES} pods created, Running, status counted",
            f"{elapsed:.2f} s",
            f"{NODES / elapsed:,.0f} pods/s",
        )
    )

    others = NODES * (PODS_PER_NODE - 1)
    start = time.perf_counter()
    for index in range(others):
        store.create(
            "v1/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"app-{index}", "namespace": "bench"},
                "spec": {"nodeName": f"node-{index % NODES}", "containers": [{"name": "app", "image": "app:1"}]},
            },
        )
    created = time.perf_counter() - start
    started = await converge(lambda: pods.count("app:1") == others, "bound pods")
    rows.append(
        (
            f"create {others:,} bound pods (store writes, controller handlers)",
            f"{created:.2f} s",
            f"{others / created:,.0f} pods/s",
        )
    )
    rows.append(("then until the kubelet has them all Running", f"{started:.2f} s", f"{others / started:,.0f} pods/s"))

    store.merge_patch(
        "apps/v1/daemonsets",
        "bench",
        "agent",
        {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}},
    )
    elapsed = await converge(
        lambda: (
            pods.count("agent:2") == NODES
            and ds_status().get("updatedNumberScheduled") == NODES
            and ds_status().get("numberAvailable") == NODES
        ),
        "rolling update",
    )
    rows.append(
        (
            f"RollingUpdate (maxUnavailable 10%) of {NODES} daemon pods",
            f"{elapsed:.2f} s",
            f"{NODES / elapsed:,.0f} pods/s",
        )
    )

    # Single node events with 50,000 pods present: the cost must not grow with the number of pods.
    latencies = []
    for index in range(500):
        begin = time.perf_counter()
        store.merge_patch("v1/nodes", None, f"node-{index}", {"metadata": {"labels": {"bench/touched": "yes"}}})
        latencies.append(time.perf_counter() - begin)
    await asyncio.sleep(0)
    rows.append(
        (
            "one node label patch incl. controller handlers (median of 500)",
            f"{statistics.median(latencies) * 1e3:.2f} ms",
            f"{1 / statistics.median(latencies):,.0f} patches/s",
        )
    )

    module = {
        "apiVersion": "kmm.sigs.x-k8s.io/v1beta1",
        "kind": "Module",
        "metadata": {"name": "onload-module", "namespace": "onload"},
        "spec": {
            "selector": {"node-role.kubernetes.io/worker": ""},
            "moduleLoader": {
                "container": {
                    "modprobe": {"moduleName": "onload"},
                    "kernelMappings": [{"regexp": "el9", "containerImage": "onload:${KERNEL_FULL_VERSION}"}],
                    "version": "1",
                }
            },
        },
    }
    loaded_versions: dict[str, str] = {}

    def on_node(event: WatchEvent) -> None:
        node = event["object"]
        labels = node["metadata"].get("labels") or {}
        if event["type"] != "DELETED" and READY in labels:
            loaded_versions[node["metadata"]["name"]] = labels.get(VERSION_READY, "")
        else:
            loaded_versions.pop(node["metadata"]["name"], None)

    def loaded(version: str) -> int:
        return sum(1 for value in loaded_versions.values() if value == version)

    store.subscribe("v1/nodes", on_node)
    store.create(MODULES, module)
    start = time.perf_counter()
    for index in range(NODES):
        store.merge_patch("v1/nodes", None, f"node-{index}", {"metadata": {"labels": {VERSION: "1"}}})

    elapsed = await converge(lambda: loaded("1") == NODES, "module loaded") + (time.perf_counter() - start)
    rows.append(
        (f"KMM: label {NODES} nodes, module loaded everywhere", f"{elapsed:.2f} s", f"{NODES / elapsed:,.0f} nodes/s")
    )

    store.merge_patch(MODULES, "onload", "onload-module", {"spec": {"moduleLoader": {"container": {"version": "2"}}}})
    start = time.perf_counter()
    for index in range(NODES):
        store.merge_patch("v1/nodes", None, f"node-{index}", {"metadata": {"labels": {VERSION: "2"}}})
    elapsed = await converge(lambda: loaded("2") == NODES, "module upgraded") + (time.perf_counter() - start)
    rows.append(
        (
            f"KMM: relabel {NODES} nodes to a new version (unload, then load)",
            f"{elapsed:.2f} s",
            f"{NODES / elapsed:,.0f} nodes/s",
        )
    )

    max_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(
        (f"peak RSS with {NODES} nodes, {NODES * PODS_PER_NODE:,} pods, controllers", f"{max_rss_mib:,.0f} MiB", "")
    )
    controllers.stop()

    print("## kubesim simulated controllers\n")
    print("`.venv/bin/python bench/bench_kubesim_controllers.py`: kubesim's object store and all simulated")
    print("controllers in one process, simulated delays set to 0; each time runs from the change until the cluster")
    print("has converged (polled every 10 ms).\n")
    print("| Step | Time | Rate |")
    print("|---|---|---|")
    for step, duration, rate in rows:
        print(f"| {step} | {duration} | {rate} |")


if __name__ == "__main__":
    asyncio.run(main())
