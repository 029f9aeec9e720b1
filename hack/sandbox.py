"""``python -m hack.sandbox`` (``make sandbox``): the operator on a local emulated cluster.

Starts kubesim (the project's Kubernetes API server emulator) with a few simulated nodes, its DaemonSet
controller, kubelets and KMM, runs this operator against it over HTTP, applies the sample Onload CR of
``config/samples/onload/base`` and shows its progress until it is Ready. It then keeps running, with a
kubeconfig for ``kubectl``, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kopf
import yaml
from kubernetes import client, config

from kubesim.simulator import Simulator
from onload_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from onload_operator.config import OperatorConfig
from onload_operator.planner.status import READY, condition_of
from onload_operator.runtime import OperatorThread

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "config" / "samples" / "onload" / "base"
CRD_DIR = ROOT / "crds"
DEFAULT_NODES = (
    "worker-[0-2]:labels=node-role.kubernetes.io/worker=;"
    "control-plane-0:labels=node-role.kubernetes.io/control-plane=:taints=node-role.kubernetes.io/control-plane:NoSchedule"
)
DEFAULT_DEVICE_PLUGIN_IMAGE = "docker.io/onload/onload-device-plugin-py:0.1.0"
ROLE_PREFIX = "node-role.kubernetes.io/"
WORKER_LABEL = f"{ROLE_PREFIX}worker"
NAMESPACE = "onload-sandbox"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hack.sandbox", description=__doc__)
    parser.add_argument(
        "--nodes",
        default=DEFAULT_NODES,
        help="kubesim node spec, or a count (default: 3 workers, 1 control plane); every node without a "
        f"{ROLE_PREFIX}* label becomes a worker, which the sample CR selects",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("sandbox"), help="where the kubeconfig goes (default: sandbox)"
    )
    parser.add_argument("--port", type=int, default=0, help="API server port (default: a free one)")
    parser.add_argument("--exit-when-ready", action="store_true", help="exit 0 once the CR is Ready (for tests)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for Ready (default: 120)")
    parser.add_argument(
        "--verbose", action="store_true", help="show the operator's log here (else it goes to DIR/operator.log)"
    )
    return parser.parse_args(argv)


def sample_documents() -> list[dict[str, Any]]:
    documents = []
    for name in ("service_account.yaml", "onload.yaml"):
        for document in yaml.safe_load_all((SAMPLE_DIR / name).read_text()):
            if document:
                document.setdefault("metadata", {})["namespace"] = NAMESPACE
                documents.append(document)
    return documents


def progress_line(body: dict[str, Any]) -> str:
    status = body.get("status") or {}
    nodes = status.get("nodes") or {}
    ready = condition_of(status, READY)
    return (
        f"Ready={ready.get('status', 'Unknown')} ({ready.get('reason', 'waiting for the operator')}) "
        f"nodes: {nodes.get('selected', 0)} selected, {nodes.get('moduleReady', 0)} with the module, "
        f"{nodes.get('devicePluginReady', 0)} with the device plugin"
    )


def wait_until_ready(custom: Any, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        line = progress_line(body)
        if line != last:
            print(f"  {line}", flush=True)
            last = line
        if condition_of(body.get("status"), READY).get("status") == "True":
            return True
        time.sleep(0.2)
    return False


def log_to_file(path: Path) -> None:
    """The operator's log goes to ``path``, with timestamps; the terminal shows only warnings."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setLevel(logging.WARNING)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_file)
    root.setLevel(logging.INFO)
    logging.getLogger("kopf").setLevel(logging.ERROR)  # e.g. "OS signals are ignored" in a thread


def label_workers(core: Any) -> list[str]:
    """Every node without a role label becomes a worker; the names of those labelled."""
    labelled = []
    for node in core.list_node().items:
        if not any(key.startswith(ROLE_PREFIX) for key in node.metadata.labels or {}):
            core.patch_node(node.metadata.name, {"metadata": {"labels": {WORKER_LABEL: ""}}})
            labelled.append(node.metadata.name)
    return labelled


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    kopf.configure(verbose=False, quiet=not args.verbose, log_format=kopf.LogFormat.FULL)
    args.dir.mkdir(parents=True, exist_ok=True)
    log_path = (args.dir / "operator.log").resolve()
    if not args.verbose:
        log_to_file(log_path)
    print(f"Starting kubesim with nodes {args.nodes!r} ...", flush=True)
    sim = Simulator(port=args.port, nodes=args.nodes, crds=[CRD_DIR]).start()
    operator: OperatorThread | None = None
    try:
        kubeconfig = sim.write_kubeconfig((args.dir / "kubeconfig").resolve(), namespace=NAMESPACE)
        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        core: Any = client.CoreV1Api(api_client)
        custom: Any = client.CustomObjectsApi(api_client)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        workers = label_workers(core)
        if workers:
            print(f"Labelled {', '.join(workers)} as workers ({WORKER_LABEL}).", flush=True)
        if not args.verbose:
            print(f"The operator's log: {log_path} (--verbose shows it here).", flush=True)
        image = os.environ.get("DEVICE_PLUGIN_IMG") or DEFAULT_DEVICE_PLUGIN_IMAGE
        print(f"Starting the operator (DEVICE_PLUGIN_IMG={image}) ...", flush=True)
        operator = OperatorThread(
            OperatorConfig(
                device_plugin_image=image, kubeconfig=str(kubeconfig), metrics_port=0, liveness_endpoint=None
            )
        ).start()
        onload_name = ""
        for document in sample_documents():
            if document["kind"] == "Onload":
                onload_name = document["metadata"]["name"]
                custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, document)
            else:
                sim.call(sim.apply_object, document)
        print(f"Applied {SAMPLE_DIR.relative_to(ROOT)} as Onload {NAMESPACE}/{onload_name}; progress:", flush=True)
        if not wait_until_ready(custom, onload_name, args.timeout):
            print(f"Onload {NAMESPACE}/{onload_name} did not become Ready in {args.timeout:.0f}s", file=sys.stderr)
            return 1
        print(
            f"\nOnload {NAMESPACE}/{onload_name} is Ready. API server: {sim.url}, metrics: "
            f"http://127.0.0.1:{operator.metrics_port}/metrics\nIn another terminal:\n"
            f"  kubectl --kubeconfig {kubeconfig} get onload -A\n"
            f"  kubectl --kubeconfig {kubeconfig} describe onload -n {NAMESPACE} {onload_name}\n"
            f"  kubectl --kubeconfig {kubeconfig} get nodes --show-labels\n"
            f"  kubectl --kubeconfig {kubeconfig} get modules,daemonsets,pods -A\n"
            f"  kubectl --kubeconfig {kubeconfig} edit onload -n {NAMESPACE} {onload_name}  # e.g. maxPodsPerNode",
            flush=True,
        )
        if args.exit_when_ready:
            return 0
        print("Press Ctrl-C to stop.", flush=True)
        stop = threading.Event()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signal_number, lambda *_: stop.set())
        stop.wait()
        print("\nStopping.", flush=True)
        return 0
    finally:
        if operator is not None:
            operator.stop()
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
