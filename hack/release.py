"""Set the project's version and the image tags of config/ together (``make release VERSION=x.y.z``).

The version in pyproject.toml is the tag of both images: config/manager/kustomization.yaml names them for
`kubectl apply -k config/default`, and the Makefile derives IMG and DEVICE_IMG from pyproject.toml.
tests/unit/test_release.py checks that they agree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = Path("pyproject.toml")
KUSTOMIZATION = Path("config/manager/kustomization.yaml")
# The kustomize image names (placeholders in manager.yaml) whose tag is the release version.
RELEASED_IMAGES = ("controller", "deviceplugin")
# A version that is also a valid image tag: PEP 440 release with optional pre-release (0.2.0, 1.0.0rc1).
VERSION_PATTERN = re.compile(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?")
PROJECT_VERSION = re.compile(r'^(version = ")([^"]*)(")$', re.MULTILINE)


def project_version(root: Path = ROOT) -> str:
    found = PROJECT_VERSION.search((root / PYPROJECT).read_text())
    if found is None:
        raise ValueError(f"no version in {root / PYPROJECT}")
    return found.group(2)


def image_tags(root: Path = ROOT) -> dict[str, str]:
    """The tag of each released image in config/manager/kustomization.yaml."""
    images = yaml.safe_load((root / KUSTOMIZATION).read_text())["images"]
    return {image["name"]: str(image.get("newTag", "")) for image in images if image["name"] in RELEASED_IMAGES}


def set_version(version: str, root: Path = ROOT) -> None:
    if not VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"{version!r} is not a version such as 1.2.3 or 1.2.3rc1")
    pyproject = root / PYPROJECT
    text, count = PROJECT_VERSION.subn(rf"\g<1>{version}\g<3>", pyproject.read_text(), count=1)
    if count != 1:
        raise ValueError(f"no version in {pyproject}")
    pyproject.write_text(text)
    # Edit the text rather than dump the YAML again, so comments and layout stay.
    kustomization = root / KUSTOMIZATION
    lines = kustomization.read_text().splitlines(keepends=True)
    current = None
    for index, line in enumerate(lines):
        name = re.match(r"\s*- name: (\S+)", line)
        if name:
            current = name.group(1)
        tag = re.match(r"(\s*newTag: ).*(\n?)$", line)
        if tag and current in RELEASED_IMAGES:
            lines[index] = f"{tag.group(1)}{version}{tag.group(2)}"
    kustomization.write_text("".join(lines))
    if set(image_tags(root).values()) != {version} or set(image_tags(root)) != set(RELEASED_IMAGES):
        raise ValueError(f"{kustomization}: expected a newTag for each of {', '.join(RELEASED_IMAGES)}")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: release.py VERSION")
    try:
        set_version(sys.argv[1])
    except ValueError as exc:
        sys.exit(f"release: {exc}")
    print(f"version {sys.argv[1]}: {PYPROJECT} and {KUSTOMIZATION}; commit and tag v{sys.argv[1]}")


if __name__ == "__main__":
    main()
