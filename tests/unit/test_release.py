"""The project's version and the image tags in config/ agree, and `make release` moves them together."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hack.release import KUSTOMIZATION, PYPROJECT, RELEASED_IMAGES, image_tags, project_version, set_version

ROOT = Path(__file__).resolve().parents[2]


def test_config_images_are_tagged_with_the_project_version() -> None:
    assert image_tags() == dict.fromkeys(RELEASED_IMAGES, project_version())


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for relative in (PYPROJECT, KUSTOMIZATION):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    return tmp_path


def test_release_moves_version_and_tags_together_and_keeps_the_rest(copy: Path) -> None:
    kustomization_before = (copy / KUSTOMIZATION).read_text()
    pyproject_before = (copy / PYPROJECT).read_text()
    set_version("2.3.4rc1", copy)
    assert project_version(copy) == "2.3.4rc1"
    assert image_tags(copy) == dict.fromkeys(RELEASED_IMAGES, "2.3.4rc1")
    old = project_version()
    assert (copy / KUSTOMIZATION).read_text() == kustomization_before.replace(f"newTag: {old}", "newTag: 2.3.4rc1")
    assert (copy / PYPROJECT).read_text() == pyproject_before.replace(
        f'\nversion = "{old}"\n', '\nversion = "2.3.4rc1"\n'
    )


@pytest.mark.parametrize("version", ["v1.2.3", "1.2", "1.2.3-beta", "", "1.2.3 "])
def test_release_refuses_a_version_that_is_no_tag(copy: Path, version: str) -> None:
    with pytest.raises(ValueError, match="is not a version"):
        set_version(version, copy)
    assert project_version(copy) == project_version()
