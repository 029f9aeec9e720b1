"""Golden files: compare rendered output with tests/golden/*.yaml; UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=True, default_flow_style=False, width=120)


def check_golden(name: str, documents: list[dict[str, Any]]) -> None:
    path = GOLDEN_DIR / f"{name}.yaml"
    text = dump(documents)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run the tests with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"rendered output differs from {path}; UPDATE_GOLDEN=1 rewrites it"
