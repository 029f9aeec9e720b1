"""Node eligibility rules shared by the DaemonSet controller."""

from typing import Any

import pytest

from kubesim.controllers.scheduling import (
    has_untolerated_taint,
    matches_required_node_affinity,
    requirement_matches,
    tolerates,
    with_daemon_pod_tolerations,
)

LABELS = {"zone": "a", "cores": "16", "gpu": ""}


@pytest.mark.parametrize(
    ("operator", "key", "values", "expected"),
    [
        ("In", "zone", ["a", "b"], True),
        ("In", "zone", ["b"], False),
        ("In", "missing", ["a"], False),
        ("NotIn", "zone", ["b"], True),
        ("NotIn", "zone", ["a"], False),
        ("NotIn", "missing", ["a"], True),
        ("Exists", "gpu", [], True),
        ("Exists", "missing", [], False),
        ("DoesNotExist", "missing", [], True),
        ("DoesNotExist", "gpu", [], False),
        ("Gt", "cores", ["8"], True),
        ("Gt", "cores", ["16"], False),
        ("Lt", "cores", ["32"], True),
        ("Lt", "zone", ["32"], False),
        ("Gt", "missing", ["1"], False),
        ("Bogus", "zone", ["a"], False),
    ],
)
def test_requirement_operators(operator: str, key: str, values: list[str], expected: bool) -> None:
    assert requirement_matches({"key": key, "operator": operator, "values": values}, LABELS) is expected


def node(name: str = "n1", taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": dict(LABELS)}, "spec": {"taints": taints or []}}


def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def test_affinity_terms_are_ored_and_expressions_anded() -> None:
    zone_b = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
    both = {
        "matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]},
            {"key": "gpu", "operator": "Exists"},
        ]
    }
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert matches_required_node_affinity(None, node())
    assert matches_required_node_affinity({"nodeAffinity": {}}, node())
    assert not matches_required_node_affinity(affinity(zone_b), node())
    assert matches_required_node_affinity(affinity(zone_b, both), node())
    assert matches_required_node_affinity(affinity(by_name), node())
    assert not matches_required_node_affinity(affinity(by_name), node("n2"))
    assert not matches_required_node_affinity(affinity({}), node()), "an empty term matches nothing"
    assert not matches_required_node_affinity(affinity(), node()), "no terms match nothing"


def test_tolerations() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates({"key": "k", "operator": "Equal", "value": "v"}, taint)
    assert tolerates({"key": "k", "value": "v", "effect": "NoSchedule"}, taint)
    assert not tolerates({"key": "k", "value": "other"}, taint)
    assert not tolerates({"key": "k", "value": "v", "effect": "NoExecute"}, taint)
    assert tolerates({"key": "k", "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": "x", "operator": "Exists"}, taint)
    tainted = node(taints=[taint, {"key": "soft", "effect": "PreferNoSchedule"}])
    assert has_untolerated_taint(tainted, [], ("NoSchedule",))
    assert not has_untolerated_taint(tainted, [], ("NoExecute",))
    assert not has_untolerated_taint(tainted, [{"key": "k", "operator": "Exists"}], ("NoSchedule", "NoExecute"))


def test_daemon_pod_tolerations_are_added_once() -> None:
    spec = {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]}
    tolerations = with_daemon_pod_tolerations(spec)
    keys = [t["key"] for t in tolerations]
    assert keys.count("node.kubernetes.io/not-ready") == 1
    assert "node.kubernetes.io/unschedulable" in keys
    assert "node.kubernetes.io/network-unavailable" not in keys
    assert "node.kubernetes.io/network-unavailable" in [
        t["key"] for t in with_daemon_pod_tolerations({"hostNetwork": True})
    ]
