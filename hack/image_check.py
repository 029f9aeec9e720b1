"""Run the two built images as a cluster would (``make image-check``; opt-in, not in CI).

- Every console script of each image answers ``--help``; the device-plugin image has no kopf, no Kubernetes
  client and no operator, neither image has pip.
- The operator image runs as non-root with a read-only root filesystem, every capability dropped and no new
  privileges, against ``python -m kubesim serve``; it reconciles the pre-built sample CR to Ready and serves
  ``/healthz`` and ``/metrics``.
- The device-plugin image runs the plugin against a fake kubelet directory and registers ``amd.com/onload``.

IMG and DEVICE_IMG name the images; CONTAINER_TOOL=docker runs them with Docker, anything else with podman.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.device_plugin.fake_kubelet import FakeKubelet  # noqa: E402

T = TypeVar("T")
PYTHON = sys.executable
# The kernel that the pre-built sample overlay has a module image for.
NODES = "worker-[0-1]:kernel=4.18.0-372.49.1.el8_6.x86_64:labels=node-role.kubernetes.io/worker="
SAMPLE = ROOT / "config" / "samples" / "onload" / "overlays" / "pre-built"
OPERATOR_CONTAINER = "onload-image-check-operator"
PLUGIN_CONTAINER = "onload-image-check-device-plugin"
MAX_PODS = 3


def engine() -> list[str]:
    if os.environ.get("CONTAINER_TOOL") == "docker":
        return ["docker"]
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "hack" / "containers" / "containers.conf"))
    os.environ.setdefault("CONTAINERS_STORAGE_CONF", str(ROOT / "hack" / "containers" / "storage.conf"))
    return ["podman"]


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(command)}\n{result.stdout}{result.stderr}")
    return result.stdout


def ok(message: str) -> None:
    print(f"ok: {message}", flush=True)


def poll(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Return the predicate's first truthy value, or fail once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        with_error = None
        try:
            value = predicate()
        except Exception as exc:  # not yet: a connection refused, a missing file
            value, with_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            logs = Path(tempfile.gettempdir())
            raise SystemExit(f"FAILED: {what} within {timeout:.0f}s ({with_error or 'not yet'}; logs in {logs})")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: str = response.read().decode()
        return body


@contextmanager
def container(name: str, *arguments: str) -> Iterator[str]:
    tool = engine()
    subprocess.run([*tool, "rm", "-f", name], capture_output=True, check=False)
    run(*tool, "run", "-d", "--name", name, *arguments)
    try:
        yield name
    finally:
        logs = subprocess.run([*tool, "logs", name], capture_output=True, text=True, check=False)
        Path(tempfile.gettempdir(), f"{name}.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([*tool, "rm", "-f", "-t", "5", name], capture_output=True, check=False)


def check_contents(image: str, device_image: str) -> None:
    tool = engine()
    run(*tool, "run", "--rm", "--network", "none", image, "--help")
    run(*tool, "run", "--rm", "--network", "none", "--entrypoint", "onload-profile-to-configmap", image, "--help")
    run(*tool, "run", "--rm", "--network", "none", device_image, "--help")
    run(*tool, "run", "--rm", "--network", "none", "--entrypoint", "onload-worker", device_image, "--help")
    ok("onload-operator, onload-profile-to-configmap, onload-device-plugin and onload-worker answer --help")
    absent = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    for target, modules in (
        (image, ("pip", "setuptools", "grpc", "device_plugin")),
        (device_image, ("pip", "setuptools", "kopf", "kubernetes", "onload_operator")),
    ):
        found = run(*tool, "run", "--rm", "--network", "none", "--entrypoint", "python", target, "-c", absent, *modules)
        if found.strip() != "[]":
            raise SystemExit(f"FAILED: {target} contains {found.strip()}")
        ok(f"{target} has none of {', '.join(modules)}")
    commands = "import shutil; print([c for c in ('onload-operator', 'pip', 'pip3') if shutil.which(c)])"
    found = run(*tool, "run", "--rm", "--network", "none", "--entrypoint", "python", device_image, "-c", commands)
    if found.strip() != "[]":
        raise SystemExit(f"FAILED: {device_image} has the commands {found.strip()}")
    ok(f"{device_image} has no onload-operator and no pip command")


def check_operator(image: str, device_image: str, work: Path) -> None:
    kubeconfig = work / "kubeconfig"
    kubesim = subprocess.Popen(
        [PYTHON, "-m", "kubesim", "serve", "--port", "0", "--nodes", NODES, "--crd", str(ROOT / "crds"),
         "--kubeconfig", str(kubeconfig)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(work / "kubesim.log").open("w"),
    )  # fmt: skip
    try:
        poll(lambda: kubeconfig.exists() and "server:" in kubeconfig.read_text(), 30, "kubesim writes its kubeconfig")
        kubeconfig.chmod(0o644)  # readable by the operator's non-root user
        kubectl = ["kubectl", "--kubeconfig", str(kubeconfig)]
        health_port, metrics_port = free_port(), free_port()
        with container(
            OPERATOR_CONTAINER,
            "--network", "host", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-e", f"DEVICE_PLUGIN_IMG={device_image}",
            "-v", f"{kubeconfig}:/etc/onload/kubeconfig:ro", image,
            "--kubeconfig", "/etc/onload/kubeconfig", "--log-format", "plain",
            "--liveness", f"http://127.0.0.1:{health_port}/healthz",
            "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics_port),
        ):  # fmt: skip
            tool = engine()
            uid = run(*tool, "exec", OPERATOR_CONTAINER, "python", "-c", "import os; print(os.getuid())").strip()
            status = run(*tool, "exec", OPERATOR_CONTAINER, "cat", "/proc/1/status")
            effective = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
            touch = subprocess.run(
                [*tool, "exec", OPERATOR_CONTAINER, "python", "-c", "open('/opt/venv/x', 'w')"],
                capture_output=True,
                text=True,
                check=False,
            )
            if uid == "0" or int(effective, 16) != 0 or "Read-only file system" not in touch.stderr:
                raise SystemExit(f"FAILED: uid {uid}, CapEff {effective}, write: {touch.stderr.strip()[-80:]}")
            ok(f"operator runs as uid {uid}, no capabilities (CapEff {effective}), read-only root filesystem")
            run(*kubectl, "apply", "-k", str(SAMPLE))
            ready = '{.status.conditions[?(@.type=="Ready")].status} {.status.nodes.devicePluginReady}'
            state = poll(
                lambda: (
                    (out := run(*kubectl, "get", "onload", "onload", "-o", f"jsonpath={ready}")).startswith("True")
                    and out
                ),
                180,
                "the sample CR becomes Ready",
            )
            ok(f"the sample Onload CR is Ready (Ready, device-plugin nodes: {state})")
            daemonset = run(*kubectl, "get", "daemonset", "onload-onload-device-plugin-ds", "-o", "name").strip()
            ok(f"the operator created {daemonset} and the KMM Modules")
            poll(lambda: http_get(f"http://127.0.0.1:{health_port}/healthz"), 30, "/healthz answers")
            ok("/healthz answers 200")
            metrics = poll(lambda: http_get(f"http://127.0.0.1:{metrics_port}/metrics"), 30, "/metrics answers")
            if "onload_operator_reconciles_total" not in metrics:
                raise SystemExit("FAILED: /metrics has no onload_operator_reconciles_total")
            ok("/metrics serves onload_operator_reconciles_total")
    finally:
        kubesim.terminate()
        kubesim.wait(10)


async def check_device_plugin(device_image: str, work: Path) -> None:
    directory = work / "device-plugins"
    directory.mkdir()
    kubelet = FakeKubelet(str(directory))
    await kubelet.start()
    try:
        with container(
            PLUGIN_CONTAINER,
            "--network", "none", "--read-only", "--cap-drop", "ALL",
            "-v", f"{directory}:/var/lib/kubelet/device-plugins", device_image,
            f"-maxPods={MAX_PODS}", "-logFormat=text",
        ):  # fmt: skip
            deadline = time.monotonic() + 60
            while not (kubelet.registrations and len(kubelet.latest) == MAX_PODS):
                if time.monotonic() > deadline:
                    log = Path(tempfile.gettempdir(), f"{PLUGIN_CONTAINER}.log")
                    raise SystemExit(f"FAILED: the device plugin did not register within 60s (its log: {log})")
                await asyncio.sleep(0.2)
            registration = kubelet.registrations[-1]
            ok(
                f"device plugin registered {registration.resource_name} at {registration.endpoint} and lists "
                f"{len(kubelet.latest)} devices ({kubelet.latest[0].health} without /dev/onload)"
            )
    finally:
        await kubelet.stop()


def main() -> None:
    image, device_image = os.environ["IMG"], os.environ["DEVICE_IMG"]
    if shutil.which("kubectl") is None:
        raise SystemExit("kubectl is needed")
    with tempfile.TemporaryDirectory(prefix="onload-image-check-") as directory:
        work = Path(directory)
        check_contents(image, device_image)
        check_operator(image, device_image, work)
        asyncio.run(check_device_plugin(device_image, work))
    sizes = run(*engine(), "image", "inspect", "--format", "{{.Size}}", image, device_image).split()
    for name, size in zip((image, device_image), sizes, strict=True):
        print(f"size: {name} {int(size) / 1e6:.0f} MB", flush=True)
    print("image-check passed")


if __name__ == "__main__":
    main()
