"""kubesim at scale: 5,000 nodes and 50,000 pods in one process; HTTP list and watch throughput, and memory.

The simulator runs in a child process (so that client and server do not share an interpreter lock) with its
controllers off: the numbers are those of the API server and the store. Everything talks over loopback.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3

NODES = 5_000
PODS = 50_000
NAMESPACES = 10
WATCH_EVENTS = 10_000
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def _rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pod(index: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"pod-{index}",
            "namespace": f"ns-{index % NAMESPACES}",
            "labels": {"app": f"app-{index % 10}", "tier": "web"},
        },
        "spec": {
            "nodeName": f"node-{index % NODES}",
            "containers": [
                {"name": "main", "image": "registry.k8s.io/pause:3.9", "env": [{"name": "A", "value": "1"}]}
            ],
        },
    }


def _serve(connection: multiprocessing.connection.Connection) -> None:
    """Child process: load the cluster, report the URL and load figures, then serve until told to stop."""
    from kubesim.simulator import Simulator

    sim = Simulator(nodes=0, run_controllers=False).start()
    rss_empty = _rss_mib()
    store = sim.store

    def load() -> tuple[float, float]:
        started = time.perf_counter()
        for index in range(NAMESPACES):
            store.create("v1/namespaces", {"metadata": {"name": f"ns-{index}"}})
        sim.add_nodes(f"node-[0-{NODES - 1}]")
        nodes_done = time.perf_counter()
        for index in range(PODS):
            store.create("v1/pods", _pod(index))
        return nodes_done - started, time.perf_counter() - nodes_done

    node_seconds, pod_seconds = sim.call(load)
    connection.send({"url": sim.url, "rss_empty": rss_empty, "node_seconds": node_seconds, "pod_seconds": pod_seconds})
    while True:
        command = connection.recv()
        if command == "stop":
            break
        if command == "churn":
            started = time.perf_counter()
            sim.call(_churn, store)
            connection.send(time.perf_counter() - started)
    sim.stop()


def _churn(store: Any) -> None:
    for index in range(WATCH_EVENTS):
        store.merge_patch(
            "v1/pods", f"ns-{index % NAMESPACES}", f"pod-{index}", {"metadata": {"labels": {"churn": "1"}}}
        )


def _timed_list(http: urllib3.PoolManager, url: str) -> tuple[int, float, int]:
    started = time.perf_counter()
    response = http.request("GET", url, headers={"Accept": "application/json"}, timeout=120)
    body = json.loads(response.data)
    elapsed = time.perf_counter() - started
    assert response.status == 200, response.data[:300]
    return len(body["items"]), elapsed, len(response.data)


def _paged(http: urllib3.PoolManager, url: str, limit: int) -> tuple[int, float]:
    started = time.perf_counter()
    count, token = 0, ""
    while True:
        separator = "&" if "?" in url else "?"
        response = http.request("GET", f"{url}{separator}limit={limit}&continue={token}", timeout=120)
        body = json.loads(response.data)
        count += len(body["items"])
        token = body["metadata"].get("continue", "")
        if not token:
            return count, time.perf_counter() - started


def _watch(url: str, expected: int, ready: threading.Event, done: Callable[[int, float], None]) -> None:
    http = urllib3.PoolManager()
    response = http.request("GET", url, preload_content=False, timeout=urllib3.Timeout(connect=10, read=120))
    ready.set()
    received = 0
    first = 0.0
    buffer = b""
    for chunk in response.stream(65536):
        buffer += chunk
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        for line in lines:
            if line and json.loads(line)["type"] in ("ADDED", "MODIFIED", "DELETED"):
                if received == 0:
                    first = time.perf_counter()
                received += 1
        if received >= expected:
            break
    response.release_conn()
    done(received, time.perf_counter() - first if first else 0.0)


def main() -> None:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    info = parent.recv()
    url = info["url"]
    rss_loaded = _rss_mib(process.pid or 0)
    http = urllib3.PoolManager(maxsize=4)
    rows: list[tuple[str, str]] = []

    rows.append(("Store load: nodes/s", f"{NODES / info['node_seconds']:,.0f}"))
    rows.append(("Store load: pods/s", f"{PODS / info['pod_seconds']:,.0f}"))
    rows.append(("RSS before loading (MiB)", f"{info['rss_empty']:,.0f}"))
    rows.append((f"RSS with {NODES:,} nodes + {PODS:,} pods (MiB)", f"{rss_loaded:,.0f}"))
    per_object = (rss_loaded - info["rss_empty"]) * 1024 / (NODES + PODS)
    rows.append(("RSS per stored object (KiB)", f"{per_object:.1f}"))

    count, seconds, size = _timed_list(http, f"{url}/api/v1/nodes")
    rows.append((f"LIST nodes ({count:,} objects, {size / 2**20:.1f} MiB) objects/s", f"{count / seconds:,.0f}"))
    started = time.perf_counter()
    table = json.loads(http.request("GET", f"{url}/api/v1/nodes", headers={"Accept": TABLE}, timeout=120).data)
    rows.append(
        (f"kubectl-style Table of nodes ({len(table['rows']):,} rows) seconds", f"{time.perf_counter() - started:.3f}")
    )
    count, seconds, size = _timed_list(http, f"{url}/api/v1/pods")
    rows.append((f"LIST pods, all ({count:,} objects, {size / 2**20:.1f} MiB) objects/s", f"{count / seconds:,.0f}"))
    count, seconds = _paged(http, f"{url}/api/v1/pods", 500)
    rows.append((f"LIST pods paged by 500 ({count:,} objects) objects/s", f"{count / seconds:,.0f}"))
    count, seconds, _ = _timed_list(http, f"{url}/api/v1/pods?labelSelector=app%3Dapp-3")
    selector_seconds = seconds
    rows.append((f"LIST pods labelSelector app=app-3 ({count:,} of {PODS:,}) seconds", f"{seconds:.3f}"))
    count, seconds, _ = _timed_list(http, f"{url}/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-42")
    rows.append((f"LIST pods fieldSelector spec.nodeName ({count} of {PODS:,}) seconds", f"{seconds:.3f}"))
    count, seconds, _ = _timed_list(http, f"{url}/api/v1/namespaces/ns-3/pods")
    rows.append((f"LIST pods in one namespace ({count:,}) objects/s", f"{count / seconds:,.0f}"))
    _, full_seconds, _ = _timed_list(http, f"{url}/api/v1/pods")
    rows.append(("Ratio: selector list time / full list time", f"{selector_seconds / full_seconds:.2f}"))

    results: dict[str, tuple[int, float]] = {}
    ready = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(
            f"{url}/api/v1/pods?watch=true&resourceVersion=0",
            PODS,
            ready,
            lambda n, s: results.update(initial=(n, s)),
        ),
    )
    watcher.start()
    watcher.join(timeout=150)
    received, seconds = results["initial"]
    rows.append((f"WATCH from resourceVersion=0: initial ADDED events/s ({received:,})", f"{received / seconds:,.0f}"))

    listed_rv = json.loads(http.request("GET", f"{url}/api/v1/namespaces/ns-0/configmaps").data)["metadata"]
    ready = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(
            f"{url}/api/v1/pods?watch=true&resourceVersion={listed_rv['resourceVersion']}",
            WATCH_EVENTS,
            ready,
            lambda n, s: results.update(live=(n, s)),
        ),
    )
    watcher.start()
    ready.wait(30)
    parent.send("churn")
    churn_seconds = parent.recv()
    watcher.join(timeout=150)
    received, seconds = results["live"]
    rows.append(
        (
            f"Store writes (merge patches) with one watcher, writes/s ({WATCH_EVENTS:,})",
            f"{WATCH_EVENTS / churn_seconds:,.0f}",
        )
    )
    rows.append((f"WATCH live MODIFIED events delivered/s ({received:,})", f"{received / seconds:,.0f}"))

    parent.send("stop")
    process.join(timeout=60)

    print("## kubesim")
    print()
    print("Command: `.venv/bin/python bench/bench_kubesim.py`")
    print()
    print(
        f"One kubesim process holding {NODES:,} nodes and {PODS:,} pods (controllers off), queried over loopback HTTP "
        "by a client in another process (JSON decoding included)."
    )
    print()
    print("| Measurement | Value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
