"""Two CRs never run Onload on the same node: the one that would is refused."""

from __future__ import annotations

from onload_operator.actions import ApplyChild, PatchNode, PostEvent
from onload_operator.planner.checks import (
    SELECTOR_CONFLICT,
)
from onload_operator.planner.reconcile import Plan
from tests.unit.onload_samples import SELECTOR, World, conditions, converge, cr_body, entry, worker_nodes


def test_later_cr_selecting_the_same_nodes_is_refused() -> None:
    first = cr_body(name="first")
    second = cr_body(name="second")
    second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    onloads = [entry(first), entry(second)]
    world = World(second, worker_nodes(5))
    result = world.plan(onloads=onloads)
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == []
    assert result.status is not None
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == SELECTOR_CONFLICT
    assert "ns/first" in ready["message"]
    assert "worker-0, worker-1, worker-2 and 2 more" in ready["message"]
    assert World(first, worker_nodes(5)).plan(onloads=onloads).of(ApplyChild)  # the earlier CR is unaffected
    disjoint = cr_body(name="second", selector={"pool": "b"})
    disjoint["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    nodes = {**worker_nodes(2), "b-0": {"pool": "b"}}
    assert World(disjoint, nodes).plan(onloads=[entry(first), entry(disjoint)]).of(ApplyChild)


def _two_pools() -> tuple[World, World]:
    """CR ``first`` (created first) converged on pool a (worker-0, worker-1), CR ``second`` on pool b (worker-2)."""
    nodes = worker_nodes(3)
    for node, pool in (("worker-0", "a"), ("worker-1", "a"), ("worker-2", "b")):
        nodes[node]["pool"] = pool
    first = cr_body(name="first", selector={"pool": "a"})
    second = cr_body(name="second", selector={"pool": "b"})
    second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    return (
        converge(World(first, nodes, others=[second])),
        converge(World(second, nodes, others=[first])),
    )


def _assert_conflict(result: Plan, *phrases: str) -> None:
    assert result.of(ApplyChild) == []
    assert result.of(PatchNode) == []
    assert result.status is not None
    assert conditions(result.status)["Ready"] == ("False", SELECTOR_CONFLICT)
    assert conditions(result.status)["Degraded"] == ("True", SELECTOR_CONFLICT)
    assert [(e.type, e.reason) for e in result.of(PostEvent)] == [("Warning", SELECTOR_CONFLICT)]
    message = next(c["message"] for c in result.status["conditions"] if c["type"] == "Ready")
    for phrase in phrases:
        assert phrase in message


def test_older_cr_edited_over_nodes_where_a_newer_one_runs_is_refused() -> None:
    first, second = _two_pools()
    first.body["spec"]["selector"] = dict(SELECTOR)  # now also selects worker-2, where second runs
    first.body["metadata"]["generation"] = 2
    _assert_conflict(first.plan(), "Onload ns/second runs on worker-2")
    assert second.plan().writes == 0  # the newer CR keeps its node and stays Ready
    assert conditions(second.body["status"])["Ready"] == ("True", "AllNodesReady")


def test_newer_cr_over_nodes_where_an_older_one_runs_is_refused() -> None:
    first, second = _two_pools()
    second.body["spec"]["selector"] = dict(SELECTOR)  # now also selects worker-0 and worker-1
    second.body["metadata"]["generation"] = 2
    _assert_conflict(second.plan(), "Onload ns/first runs on worker-0, worker-1")
    assert first.plan().writes == 0
    third = cr_body(name="third")
    third["metadata"]["creationTimestamp"] = "2026-01-03T00:00:00Z"
    brand_new = World(third, first.nodes, others=[first.body, second.body])
    _assert_conflict(
        brand_new.plan(), "Onload ns/first runs on worker-0, worker-1", "Onload ns/second runs on worker-2"
    )


def test_node_released_by_another_cr_is_taken_once_its_labels_are_gone() -> None:
    first, second = _two_pools()
    second.body["spec"]["selector"] = {"pool": "none"}
    first.body["spec"]["selector"] = dict(SELECTOR)
    # While second stops its device plugin and unloads its modules, worker-2 still belongs to it.
    _assert_conflict(first.plan(), "Onload ns/second runs on worker-2")
    second.carry_out(second.plan())
    second.carry_out(second.plan(device_plugin_nodes=frozenset()))
    assert not any(key.endswith("second") or "second-" in key for key in first.nodes["worker-2"])
    result = first.plan()
    assert [p.node for p in result.of(PatchNode)] == ["worker-2"]


def test_node_carrying_the_labels_of_both_crs_stays_with_the_earlier_one() -> None:
    first, second = _two_pools()
    for key, value in first.nodes["worker-0"].items():
        if "first" in key:
            first.nodes["worker-2"][key] = value
    first.body["spec"]["selector"] = dict(SELECTOR)
    second.body["spec"]["selector"] = dict(SELECTOR)
    _assert_conflict(second.plan(), "Onload ns/first runs on worker-0, worker-1, worker-2")
    result = first.plan()
    assert result.status is None or conditions(result.status)["Ready"][1] != SELECTOR_CONFLICT
