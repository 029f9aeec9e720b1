"""The docs stay true: the configuration reference is the generator's output, troubleshooting covers every reason."""

from __future__ import annotations

import re
from pathlib import Path

from hack.gen_docs import TARGET, render
from onload_operator.api import v1alpha1
from onload_operator.api.crd import model_schema
from onload_operator.planner import checks, status
from onload_operator.upgrade import summary

ROOT = Path(__file__).resolve().parents[2]
CONDITION_TYPES = {
    status.READY,
    status.PROGRESSING,
    status.DEGRADED,
    summary.UPGRADING,
    summary.UPGRADE_BLOCKED,
    summary.UPGRADE_FAILED,
}


def field_paths(node: dict[str, object], path: str) -> list[str]:
    found = []
    while node.get("type") == "array":
        node = node["items"]  # type: ignore[assignment]
        path += "[]"
    for name, child in node.get("properties", {}).items():  # type: ignore[attr-defined]
        found.append(f"{path}.{name}")
        found += field_paths(child, f"{path}.{name}")
    return found


def test_configuration_reference_is_generated_from_the_models() -> None:
    assert (ROOT / TARGET).read_text() == render(), "docs/configuration.md is stale: make manifests"


def test_configuration_reference_lists_every_crd_field() -> None:
    text = (ROOT / TARGET).read_text()
    paths = field_paths(model_schema(v1alpha1.OnloadSpec), "spec")
    paths += field_paths(model_schema(v1alpha1.OnloadStatus), "status")
    assert len(paths) > 30
    assert [path for path in paths if f"| `{path}` |" not in text] == []


def emitted_reasons() -> set[str]:
    conditions = (
        {
            value
            for module in (status, checks)
            for name, value in vars(module).items()
            if name.isupper() and isinstance(value, str) and re.fullmatch(r"[A-Z][a-z]+[A-Za-z]*", value)
        }
        - CONDITION_TYPES
        - {"Onload"}
    )
    source = (ROOT / "onload_operator" / "planner" / "events.py").read_text()
    events = set(re.findall(r'\(\s*"([A-Z][A-Za-z]+)",\s*\w+_key,', source))
    events |= set(re.findall(r':\s*"(Created|Updated|DriftRepaired)"', source))
    upgrade = (ROOT / "onload_operator" / "upgrade" / "machine.py").read_text()
    events |= set(re.findall(r'_event\(node\.name, (?:NORMAL|WARNING), "([A-Za-z]+)"', upgrade))
    rollout = (ROOT / "onload_operator" / "upgrade" / "summary.py").read_text()
    conditions |= set(re.findall(r'ConditionValue\(\s*\w+,\s*"(?:True|False)",\s*"([A-Za-z]+)"', rollout))
    conditions |= {"Progressing", "Paused", "Blocked"}  # the Upgrading reason is the phase while it runs
    return conditions | events


def test_troubleshooting_explains_every_condition_and_event_reason() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    reasons = emitted_reasons()
    assert {"AllNodesReady", "SelectorConflict", "LoadingModules", "DriftRepaired"} <= reasons
    assert sorted(reason for reason in reasons if f"`{reason}`" not in text) == []


def test_readme_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc.name in {"configuration.md", "troubleshooting.md", "samples.md"}:
            assert f"(docs/{doc.name})" in readme
