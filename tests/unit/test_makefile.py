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
