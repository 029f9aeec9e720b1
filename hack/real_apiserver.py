"""``make test-real-apiserver``: the CRDs, every sample and kubesim's contract suite on a REAL API server.

It runs ``../shared/tools/real-apiserver/serve.py`` (k8s.io/apiextensions-apiserver with etcd on localhost), which
creates the CRDs of ``crds/`` and ``kubesim/crds/`` with the real API machinery; then it creates every custom
resource that the kustomizations under ``config/samples/`` build (the other kinds are built-in kinds, which that
server does not serve), and runs the contract tests (``-m realcluster``) against it. Opt-in: it needs the binary from
``build.sh`` (about 4 minutes and 300 MB of Debian packages once), etcd and openssl, and says which one is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO.parent / "shared" / "tools" / "real-apiserver"
BINARY = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crd-apiserver" / "apiextensions-apiserver"
CRD_DIRS = (REPO / "crds", REPO / "kubesim" / "crds")
SAMPLES = REPO / "config" / "samples"
READY_TIMEOUT = 120.0


def missing_prerequisites(binary: Path) -> list[str]:
    """What this machine lacks to run the real API server, each with how to get it."""
    missing = []
    if not (TOOL / "serve.py").is_file():
        missing.append(f"{TOOL}/serve.py (the shared real-apiserver tool; shared/ beside the repository)")
    if not os.access(binary, os.X_OK):
        missing.append(
            f"the apiextensions-apiserver binary at {binary}: build it with {TOOL}/build.sh "
            "(about 4 minutes, about 300 MB of Debian packages, once)"
        )
    if shutil.which("etcd") is None:
        missing.append("etcd: apt-get install -y etcd-server")
    if shutil.which("openssl") is None:
        missing.append("openssl: apt-get install -y openssl")
    if shutil.which("kubectl") is None:
        missing.append("kubectl (its kustomize builds the samples)")
    return missing


def start_server(binary: Path, workdir: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start serve.py and wait for its 'ready <kubeconfig>' line."""
    kubeconfig = workdir / "real.kubeconfig"
    log = (workdir / "serve.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            str(TOOL / "serve.py"),
            "--binary",
            str(binary),
            "--kubeconfig",
            str(kubeconfig),
            "--crds",
            *(str(d) for d in CRD_DIRS),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    line = _read_line(server.stdout, deadline)
    if not line.startswith("ready "):
        server.terminate()
        server.wait(10)
        log.close()
        raise SystemExit(
            f"the real API server did not start (serve.py said {line!r}):\n{(workdir / 'serve.log').read_text()}"
        )
    return server, kubeconfig


def _read_line(stream: IO[str], deadline: float) -> str:
    os.set_blocking(stream.fileno(), False)
    buffer = ""
    while time.monotonic() < deadline:
        chunk = stream.readline()
        buffer += chunk
        if buffer.endswith("\n"):
            return buffer.strip()
        time.sleep(0.1)
    return buffer.strip() or "nothing"


def verified_kubeconfig(kubeconfig: Path) -> Path:
    """The kubeconfig with the server's self-signed certificate as its CA instead of skipping verification."""
    document = yaml.safe_load(kubeconfig.read_text())
    key_file = Path(document["users"][0]["user"]["client-key"])
    certificate = key_file.parent.parent / "certs" / "apiserver.crt"
    cluster = document["clusters"][0]["cluster"]
    cluster.pop("insecure-skip-tls-verify", None)
    cluster["certificate-authority"] = str(certificate)
    verified = kubeconfig.with_name("verified.kubeconfig")
    verified.write_text(yaml.safe_dump(document))
    return verified


def sample_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every object that a kustomization under config/samples builds, with its kustomization."""
    documents: list[tuple[Path, dict[str, Any]]] = []
    for kustomization in sorted(SAMPLES.rglob("kustomization.yaml")):
        built = subprocess.run(
            ["kubectl", "kustomize", str(kustomization.parent)], check=True, capture_output=True, text=True
        ).stdout
        documents.extend((kustomization.parent, d) for d in yaml.safe_load_all(built) if isinstance(d, dict))
    return documents


def create_samples(kubeconfig: Path) -> bool:
    """Create (then delete) every sample custom resource on the real server; False when one is refused."""
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    custom = client.CustomObjectsApi(api)
    served = {
        (f"{crd.spec.group}/{version.name}", crd.spec.names.kind): crd.spec.names.plural
        for crd in client.ApiextensionsV1Api(api).list_custom_resource_definition().items
        for version in crd.spec.versions
        if version.served
    }
    refused = created = 0
    core: dict[str, int] = {}
    for index, (source, document) in enumerate(sample_documents()):
        kind_key = (document.get("apiVersion", ""), document.get("kind", ""))
        plural = served.get(kind_key)
        if plural is None:
            core[kind_key[1]] = core.get(kind_key[1], 0) + 1
            continue
        group, version = kind_key[0].split("/")
        namespace = f"sample-{index}"  # samples share names; the server serves custom resources in any namespace
        name = document["metadata"]["name"]
        where = f"{kind_key[1]} {name} of {source.relative_to(REPO)}"
        try:
            custom.create_namespaced_custom_object(group, version, namespace, plural, document)
        except client.ApiException as error:
            refused += 1
            message = json.loads(error.body).get("message") if error.body else error.reason
            print(f"REFUSED {where}: {error.status} {message}")
            continue
        created += 1
        print(f"created {where}")
        custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
    print(
        f"samples: {created} custom resources created, {refused} refused; not served here (built-in kinds): "
        + ", ".join(f"{count} {kind}" for kind, count in sorted(core.items()))
    )
    api.close()
    return refused == 0 and created > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=BINARY)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. -k watch")
    arguments = parser.parse_args()
    missing = missing_prerequisites(arguments.binary)
    if missing:
        print("make test-real-apiserver cannot run on this machine; missing:", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kubesim-real-") as workdir:
        server, kubeconfig = start_server(arguments.binary, Path(workdir))
        try:
            print(f"real API server ready; CRDs of {', '.join(str(d.relative_to(REPO)) for d in CRD_DIRS)} accepted")
            verified = verified_kubeconfig(kubeconfig)
            samples_ok = create_samples(verified)
            tests = subprocess.run(
                [sys.executable, "-m", "pytest", "tests/kubesim", "-m", "realcluster", *arguments.pytest_args],
                cwd=REPO,
                env={**os.environ, "KUBESIM_CONTRACT_KUBECONFIG": str(verified)},
                check=False,
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    if not samples_ok:
        print("a sample was refused by the real API server (or none was created)", file=sys.stderr)
        return 1
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
