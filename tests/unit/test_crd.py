"""The checked-in CRD is what the models generate, reads well, and every sample CR is valid."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from onload_operator.api.crd import onload_crd
from onload_operator.api.v1alpha1 import Onload

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "onload.amd.com_onloads.yaml"
KUSTOMIZATIONS = sorted(
    path.parent.relative_to(ROOT) for base in ("config", "crds") for path in (ROOT / base).rglob("kustomization.yaml")
)


def checked_in_crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def walk_properties(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, child in schema.get("properties", {}).items():
        found.append((f"{path}.{name}", child))
        found.extend(walk_properties(child, f"{path}.{name}"))
    items = schema.get("items")
    if items is not None:
        found.extend(walk_properties(items, f"{path}[]"))
    return found


def test_checked_in_crd_matches_the_models() -> None:
    assert checked_in_crd() == onload_crd(), "crds/ is stale: run `make manifests`"


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = checked_in_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = walk_properties(schema["properties"]["spec"], "spec")
    fields += walk_properties(schema["properties"]["status"], "status")
    assert len(fields) > 40
    undocumented = [path for path, child in fields if not child.get("description")]
    assert undocumented == []


def test_schema_is_structural() -> None:
    """Every node has a type (int-or-string takes the extension instead), and nothing uses constructs that
    structural schemas forbid."""
    schema = checked_in_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, child in walk_properties(schema, ""):
        assert "type" in child or child.get("x-kubernetes-int-or-string") is True, path
        assert not {"anyOf", "allOf", "oneOf", "$ref", "title"} & child.keys(), path


def test_crd_carries_rules_defaults_and_columns() -> None:
    version = checked_in_crd()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    device_plugin = spec["properties"]["devicePlugin"]
    rules = [rule["rule"] for rule in device_plugin["x-kubernetes-validations"]]
    assert "!(has(self.setPreload) && self.setPreload && has(self.mountOnload) && self.mountOnload)" in rules
    assert device_plugin["properties"]["maxPodsPerNode"]["default"] == 100
    assert set(device_plugin["properties"]) >= {"libMountPath", "libMounthPath"}
    assert spec["properties"]["onload"]["properties"]["kernelMappings"]["minItems"] == 1
    columns = {column["name"] for column in version["additionalPrinterColumns"]}
    assert {"Version", "Ready", "Age"} <= columns
    assert version["subresources"] == {"status": {}}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=str)
def test_kustomization_builds_and_its_onload_crs_are_valid(kustomization: Path) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / kustomization)], capture_output=True, text=True, check=True
    ).stdout
    documents = [document for document in yaml.safe_load_all(built) if document]
    assert documents
    for document in documents:
        if document["kind"] == "Onload":
            Onload.from_manifest(document)


def test_every_sample_overlay_is_covered() -> None:
    names = {str(path) for path in KUSTOMIZATIONS}
    for overlay in ("pre-built", "in-cluster-build-ocp", "in-cluster-build-ocp-clusterlocal"):
        assert f"config/samples/onload/overlays/{overlay}" in names
    assert {"config/default", "config/samples/profiles", "config/samples/sfnettest"} <= names
