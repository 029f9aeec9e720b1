"""The controllers' building blocks: the resource cache, the work queue and the delay queue."""

import asyncio
from typing import Any

from kubesim.controllers.runtime import DelayQueue, ResourceCache, WorkQueue
from kubesim.errors import ApiError
from tests.kubesim.controllers.sim_fake_store import FakeStore
from tests.kubesim.controllers.sim_helpers import wait_for


def pod(name: str, rv: str, node: str | None = None, uid: str = "u1") -> dict[str, Any]:
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": uid}, "spec": spec}


def test_cache_ignores_stale_events_and_indexes_by_node() -> None:
    cache = ResourceCache(FakeStore(), "v1/pods", index_by_node=True)
    changes: list[tuple[Any, Any]] = []
    cache.add_handler(lambda old, new: changes.append((old, new)))
    cache.observe(pod("a", "5", "n1"))
    cache.observe(pod("a", "4", "n2"))  # older: ignored
    assert cache.get(("ns", "a"))["metadata"]["resourceVersion"] == "5"  # type: ignore[index]
    assert [p["metadata"]["name"] for p in cache.on_node("n1")] == ["a"]
    cache.observe(pod("a", "6", "n2"))
    assert cache.on_node("n1") == []
    assert [p["metadata"]["name"] for p in cache.on_node("n2")] == ["a"]
    # The deletion of an older incarnation (another uid, older version) does not remove the newer one.
    cache.observe_deleted(pod("a", "3", "n2", uid="old"))
    assert cache.get(("ns", "a")) is not None
    cache.observe_deleted(pod("a", "7", "n2"))
    assert cache.get(("ns", "a")) is None
    assert cache.on_node("n2") == []
    assert [(old is None, new is None) for old, new in changes] == [(True, False), (False, False), (False, True)]


async def test_work_queue_deduplicates_and_retries_api_errors() -> None:
    seen: list[str] = []
    failures = {"flaky": 2}

    def process(key: str) -> None:
        seen.append(key)
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            raise ApiError(500, "InternalError", "try again")
        if key == "broken":
            raise RuntimeError("a bug")

    queue: WorkQueue[str] = WorkQueue(asyncio.get_running_loop(), process, "test")
    for key in ("a", "a", "flaky", "broken", "a"):
        queue.add(key)
    await wait_for(lambda: seen.count("flaky") == 3, what="two retries")
    assert seen.count("a") == 1
    assert seen.count("broken") == 1, "other exceptions are logged, not retried"
    queue.close()


async def test_delay_queue_runs_keys_in_due_order_and_forgets_discarded_ones() -> None:
    fired: list[str] = []
    queue: DelayQueue[str] = DelayQueue(asyncio.get_running_loop(), fired.append)
    queue.add("late", 0.05)
    queue.add("early", 0.01)
    queue.add("dropped", 0.02)
    queue.add("moved", 0.0)
    queue.add("moved", 0.03)  # re-adding moves the due time
    queue.discard("dropped")
    assert "early" in queue
    assert "dropped" not in queue
    await wait_for(lambda: len(fired) == 3)
    assert fired == ["early", "moved", "late"]
    many = [f"k{i}" for i in range(1200)]
    for key in many:
        queue.add(key, 0)
    await wait_for(lambda: len(fired) == 1203, what="more keys than one batch")
    assert fired[3:] == many
    queue.close()
