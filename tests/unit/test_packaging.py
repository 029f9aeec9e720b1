"""Each image installs its component's dependency group of pyproject.toml, and only what that component imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

from hack.image_install import LEFT_OUT, PACKAGE_OF, console_scripts, requirements

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Distribution name -> the module it installs, where they differ.
MODULE_OF = {
    "grpcio": "grpc",
    "protobuf": "google",
    "prometheus-client": "prometheus_client",
    "PyYAML": "yaml",
    "google-re2": "re2",
}
DOCKERFILE_OF = {"operator": "Dockerfile.operator", "device-plugin": "Dockerfile.deviceplugin"}


def distribution(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement)[0]


def third_party_imports(package: Path, left_out: tuple[str, ...] = ()) -> set[str]:
    found = set()
    for source in package.rglob("*.py"):
        if source.name in left_out:
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in {package.name, "__future__"}}


def test_dependencies_are_the_union_of_the_image_groups_with_the_same_bounds() -> None:
    declared = set(PYPROJECT["project"]["dependencies"])
    grouped = {req for component in PACKAGE_OF for req in requirements(PYPROJECT, component)}
    assert grouped == declared


@pytest.mark.parametrize("component", sorted(PACKAGE_OF))
def test_image_group_covers_every_import_and_nothing_more(component: str) -> None:
    installed = {MODULE_OF.get(distribution(req), distribution(req)) for req in requirements(PYPROJECT, component)}
    assert third_party_imports(ROOT / PACKAGE_OF[component], LEFT_OUT[component]) == installed


def test_device_plugin_image_has_no_kopf_and_no_kubernetes_client() -> None:
    distributions = {distribution(req) for req in requirements(PYPROJECT, "device-plugin")}
    assert not distributions & {"kopf", "kubernetes"}


def test_each_image_gets_the_console_scripts_of_its_package_only() -> None:
    assert set(console_scripts(PYPROJECT, "operator")) == {"onload-operator", "onload-profile-to-configmap"}
    assert set(console_scripts(PYPROJECT, "device-plugin")) == {
        "onload-device-plugin",
        "onload-worker",
        "onload-host-files",
    }


@pytest.mark.parametrize("component", sorted(PACKAGE_OF))
def test_dockerfile_installs_its_component_from_the_one_pinned_base(component: str) -> None:
    text = (ROOT / DOCKERFILE_OF[component]).read_text()
    assert f"hack/image_install.py {component} /opt/venv" in text
    assert "pip install" not in text
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-[\w-]+@sha256:[0-9a-f]{64}", base.group(1)), "exact tag and digest"
    other = (ROOT / DOCKERFILE_OF[next(c for c in PACKAGE_OF if c != component)]).read_text()
    assert base.group(0) in other
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
