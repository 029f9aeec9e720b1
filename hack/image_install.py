"""Install one component of the project into a virtualenv, for the build stage of its image.

    python3 hack/image_install.py operator|device-plugin /opt/venv

The component's dependency group of pyproject.toml is installed with pip, its package is copied and compiled,
its console scripts (those of ``[project.scripts]`` that point into the package) are written, and pip and
setuptools are removed from the virtualenv. Each image thus carries one component and no installer: the
device-plugin image has no kopf, no Kubernetes client and no ``onload-operator`` command.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_OF = {"operator": "onload_operator", "device-plugin": "device_plugin"}
# Modules of a package that the image does not need (the sandbox runs the operator against kubesim, not shipped).
LEFT_OUT = {"operator": ("sandbox.py",), "device-plugin": ()}
# Parts of dependencies that the component never imports, removed after pip: the Kubernetes client's asyncio copy
# of itself (about 68 MB; the operator uses the synchronous client, and kopf its own aiohttp client).
PRUNED = {"operator": ("kubernetes/aio",), "device-plugin": ()}


def load_pyproject(root: Path = ROOT) -> dict[str, Any]:
    with (root / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def requirements(pyproject: dict[str, Any], component: str) -> list[str]:
    group: list[str] = pyproject["dependency-groups"][component]
    return group


def console_scripts(pyproject: dict[str, Any], component: str) -> dict[str, str]:
    """The ``[project.scripts]`` entries (name -> ``module:function``) that live in the component's package."""
    package = PACKAGE_OF[component]
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    return {name: target for name, target in scripts.items() if target.split(":")[0].split(".")[0] == package}


def script_text(python: Path, target: str) -> str:
    module, function = target.split(":")
    return f"#!{python}\nimport sys\n\nfrom {module} import {function}\n\nsys.exit({function}())\n"


def site_packages(python: Path) -> Path:
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", query], check=True, capture_output=True, text=True).stdout.strip())


def install(component: str, venv: Path, root: Path = ROOT) -> None:
    pyproject = load_pyproject(root)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    subprocess.run([*pip, "install", "--quiet", *requirements(pyproject, component)], check=True)
    site = site_packages(python)
    for pruned in PRUNED[component]:
        shutil.rmtree(site / pruned)
    package = PACKAGE_OF[component]
    target = site / package
    shutil.copytree(root / package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *LEFT_OUT[component]))
    subprocess.run([str(python), "-m", "compileall", "-q", str(target)], check=True)
    for name, entry in console_scripts(pyproject, component).items():
        script = venv / "bin" / name
        script.write_text(script_text(python, entry))
        script.chmod(0o755)
    subprocess.run([*pip, "uninstall", "--quiet", "--yes", "pip", "setuptools"], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("component", choices=sorted(PACKAGE_OF))
    parser.add_argument("venv", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    install(args.component, args.venv)


if __name__ == "__main__":
    main()
