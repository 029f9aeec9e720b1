"""The device-plugin image installs the runtime dependencies it needs with the bounds of pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Distribution name -> the module it installs, where they differ.
MODULE_OF = {
    "grpcio": "grpc",
    "protobuf": "google",
    "prometheus-client": "prometheus_client",
}


def image_requirements() -> list[str]:
    """The quoted requirements of the Dockerfile's dependency ``pip install``."""
    text = (ROOT / "Dockerfile.deviceplugin").read_text()
    block = re.search(r"RUN pip install \\\n((?:\s+\"[^\"]+\"(?: \\)?\n)+)", text)
    assert block is not None, "no dependency pip install in Dockerfile.deviceplugin"
    return re.findall(r'"([^"]+)"', block.group(1))


def third_party_imports(package: Path) -> set[str]:
    found = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return {
        name for name in found if name not in sys.stdlib_module_names and name not in {"device_plugin", "__future__"}
    }


def test_image_requirements_are_those_of_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(image_requirements()) <= set(declared)


def test_image_requirements_cover_every_import_of_the_device_plugin() -> None:
    installed = {
        MODULE_OF.get(re.split(r"[<>=!~ ;]", req)[0], re.split(r"[<>=!~ ;]", req)[0]) for req in image_requirements()
    }
    assert third_party_imports(ROOT / "device_plugin") <= installed
