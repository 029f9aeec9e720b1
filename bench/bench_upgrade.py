"""Upgrade benchmark: the node-by-node rollout of a new Onload version on 1,000 simulated nodes.

kubesim runs 1,000 nodes whose simulated KMM takes T seconds to swap a module (unload, then load): 4 s, which
shows the operator's own time per wave, and 30 s, closer to a real KMM swap (a worker pod pulls the module image
and runs modprobe); the operator runs as its own process. Once the CR is Ready, ``spec.upgrade`` allows 50 nodes
at a time and the version changes. The rollout's time is compared with the ideal ``ceil(N / maxParallel) * T``,
the operator's API requests are counted per node, and its peak resident memory (VmHWM) is read when the rollout is
complete.

Run: .venv/bin/python bench/bench_upgrade.py
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_operator import NAMESPACE, OPERATOR_AGENTS, Bench, OperatorProcess, onload_body  # noqa: E402
from kubesim.controllers import ControllerSettings  # noqa: E402
from kubesim.polling import wait_for  # noqa: E402
from onload_operator.api.v1alpha1 import GROUP, PLURAL, VERSION  # noqa: E402

NODES = 1000
MAX_PARALLEL = 50
SWAPS = ((1.0, 3.0), (5.0, 25.0))
"""(unload, load) seconds of the simulated module swap, one rollout each."""
NEW = "9.0.1"


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def upgrade_status(bench: Bench) -> dict[str, Any]:
    body = bench.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "onload")
    status: dict[str, Any] = (body.get("status") or {}).get("upgrade") or {}
    return status


def rollout(unload: float, load: float) -> dict[str, Any]:
    controllers = ControllerSettings(
        pod_start_delay=0.02, pod_stop_delay=0.02, kmm_load_delay=load, kmm_unload_delay=unload
    )
    with tempfile.TemporaryDirectory() as workdir:
        bench = Bench(NODES, Path(workdir), controllers)
        operator = OperatorProcess(bench, "--recheck-seconds=1")
        try:
            body = onload_body()
            body["spec"]["upgrade"] = {"maxParallel": MAX_PARALLEL, "maxUnavailable": MAX_PARALLEL}
            bench.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
            wait_for(lambda: bench.ready(NODES), 300, f"Ready on {NODES} nodes", interval=0.2)
            before = len(bench.requests)
            started = time.monotonic()
            patch = {"spec": {"onload": {"version": NEW, "userImage": f"onload-user:{NEW}"}}}
            bench.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, "onload", patch, _content_type="application/merge-patch+json"
            )

            def complete() -> bool:
                status = upgrade_status(bench)
                return status.get("phase") == "Complete" and status.get("progress") == f"{NODES}/{NODES}"

            wait_for(complete, 1800, "the rollout", interval=0.5)
            seconds = time.monotonic() - started
            requests = [agent for agent, _method in bench.requests[before:] if agent.startswith(OPERATOR_AGENTS)]
            peak = peak_rss_kib(operator.process.pid)
        finally:
            operator.stop()
            bench.stop()
    swap = unload + load
    ideal = math.ceil(NODES / MAX_PARALLEL) * swap
    return {"swap": swap, "seconds": seconds, "ideal": ideal, "requests": len(requests), "peak_kib": peak}


def main() -> None:
    results = [rollout(unload, load) for unload, load in SWAPS]
    waves = math.ceil(NODES / MAX_PARALLEL)
    print("## Upgrade\n")
    print("Command: `.venv/bin/python bench/bench_upgrade.py`. kubesim with 1,000 nodes whose simulated KMM swaps a")
    print("module in T seconds (unload, then load); the operator as its own process (`--recheck-seconds=1`);")
    print(
        f"`spec.upgrade.maxParallel` = `maxUnavailable` = {MAX_PARALLEL}; a version change on a Ready CR, timed until"
    )
    print("`status.upgrade` is Complete with every node done. Requests are the operator's own (kopf's included) from")
    print("the API server's log; memory is the operator process's peak (VmHWM). The overhead per wave is the")
    print("operator's own time per node: the API round trips of its four other steps.\n")
    print(
        "| nodes | maxParallel | T (s) | ideal ceil(N/maxParallel) x T (s) | rollout (s) | rollout ÷ ideal "
        "| overhead per wave (s) | operator requests per node | operator peak RSS (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {NODES} | {MAX_PARALLEL} | {r['swap']:.0f} | {r['ideal']:.0f} | {r['seconds']:.1f} | "
            f"{r['seconds'] / r['ideal']:.2f} | {(r['seconds'] - r['ideal']) / waves:.2f} | "
            f"{r['requests'] / NODES:.1f} | {r['peak_kib'] / 1024:.1f} |"
        )


if __name__ == "__main__":
    main()
