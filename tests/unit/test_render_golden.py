"""Golden files of every child the operator renders for the sample CRs and for a CR setting every field."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from onload_operator.api.v1alpha1 import Onload
from onload_operator.render.children import Deployment, render_children
from tests.unit.golden_files import GOLDEN_DIR, check_golden

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "config" / "samples" / "onload" / "overlays"
IMAGE = "docker.io/onload/onload-device-plugin-py:0.1.0"
UID = "6b1c5b5e-0000-4000-8000-000000000001"


def _with_identity(body: dict[str, Any], namespace: str) -> Onload:
    body = dict(body)
    body["metadata"] = {**body["metadata"], "uid": UID}
    body["metadata"].setdefault("namespace", namespace)
    return Onload.model_validate(body)


def _sample(overlay: str) -> dict[str, Any]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (for kustomize) is not installed")
    output = subprocess.run(
        [kubectl, "kustomize", str(OVERLAYS / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return next(doc for doc in yaml.safe_load_all(output) if doc and doc.get("kind") == "Onload")


@pytest.mark.parametrize("overlay", sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()))
def test_sample_overlay(overlay: str) -> None:
    onload = _with_identity(_sample(overlay), "onload-system")
    check_golden(f"sample-{overlay}", render_children(Deployment.of(onload), IMAGE))


@pytest.mark.parametrize("path", sorted((GOLDEN_DIR / "inputs").glob("*.yaml")), ids=lambda p: p.stem)
def test_input(path: Path) -> None:
    onload = _with_identity(yaml.safe_load(path.read_text()), "default")
    check_golden(path.stem, render_children(Deployment.of(onload), IMAGE))
