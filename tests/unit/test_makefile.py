"""`make help` lists every target of the Makefile, each on one line with its description."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_phony_target_once() -> None:
    phony = re.findall(r"^\.PHONY: (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    output = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = [re.sub(r"\x1b\[[0-9;]*m", "", line).split(None, 1) for line in output.splitlines()]
    assert sorted(name for name, _ in listed) == sorted(phony)
    assert all(description.strip() for _, description in listed)


def test_e2e_names_what_is_missing_and_does_nothing(tmp_path: Path) -> None:
    """Where kind, kubectl and docker are absent, hack/e2e.sh says so and exits 2 before touching anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "e2e.sh")],
        env={"PATH": str(bin_dir), "IMG": "example/op:1", "DEVICE_IMG": "example/dp:1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[:4] == [
        "make e2e cannot run here; missing:",
        "  - kind (https://kind.sigs.k8s.io)",
        "  - kubectl",
        "  - docker",
    ]
