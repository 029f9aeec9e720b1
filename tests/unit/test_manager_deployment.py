"""The manager Deployment of config/default: a memory request that covers what the benchmarks measure, and the
NetworkPolicy sample that keeps its unauthenticated /metrics to a monitoring namespace."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for kustomize) is not installed")

UNITS = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}


def built(kustomization: str) -> list[dict[str, Any]]:
    output = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / kustomization)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def manager() -> dict[str, Any]:
    deployment = next(doc for doc in built("config/default") if doc["kind"] == "Deployment")
    result: dict[str, Any] = deployment
    return result


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match is not None, quantity
    return int(match[1]) * UNITS[match[2]]


def measured_rss_at_1000_nodes() -> list[float]:
    """Every operator RSS (MiB) of BENCHMARKS.md's Operator section measured with 1,000 nodes."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    section = text.split("## Operator", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [float(row[-1]) for row in rows if row[0].strip().startswith(("1000", "1,000"))]


def test_memory_request_covers_the_benchmarked_rss_at_1000_nodes() -> None:
    resources = manager()["spec"]["template"]["spec"]["containers"][0]["resources"]
    measured = measured_rss_at_1000_nodes()
    assert len(measured) >= 2  # the create → Ready run and the memory table
    assert mebibytes(resources["requests"]["memory"]) >= max(measured)
    assert mebibytes(resources["limits"]["memory"]) >= 2 * max(measured)


def test_metrics_network_policy_admits_only_the_monitoring_namespace() -> None:
    template = manager()["spec"]["template"]
    policy = next(doc for doc in built("config/samples/metrics-network-policy") if doc["kind"] == "NetworkPolicy")
    assert policy["metadata"]["namespace"] == manager()["metadata"]["namespace"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    rules = {port["port"]: rule.get("from") for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert set(rules) == set(ports)  # named ports of the manager, each admitted by exactly one rule
    assert rules["metrics"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rules["health"] is None  # the kubelet's probes
