"""ApiHealth: a quiet watch is not a stuck one, an outage is not a reason to restart, and its log is one line a
round."""

from __future__ import annotations

import logging

from onload_operator.health import QUIET_SECONDS, ApiHealth, OutageLogFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def retry_record(attempt: int, url: str) -> logging.LogRecord:
    message = f"Request attempt #{attempt}/9 failed; will retry: GET {url} -> APIServerError('down')"
    return logging.LogRecord("kopf._cogs.clients.watching", logging.ERROR, __file__, 1, message, None, None)


def test_a_watch_is_stuck_only_when_silent_past_the_threshold_outside_an_outage() -> None:
    clock = Clock()
    health = ApiHealth(["onloads", "nodes"], stuck_seconds=100, clock=clock)
    clock.now += 99
    health.heard("nodes")
    assert health.stuck() == []
    clock.now += 2
    assert health.stuck() == ["onloads"]
    health.retry_failed(1)  # an outage under way: a restart would not help
    assert health.stuck() == []
    clock.now += max(QUIET_SECONDS, 100) + 1
    assert health.stuck() == ["nodes", "onloads"]


def test_retries_are_logged_once_per_round_with_the_outage_start() -> None:
    clock = Clock()
    health = ApiHealth(["nodes"], stuck_seconds=100, clock=clock)
    log_filter = OutageLogFilter(health)
    passed = [
        log_filter.filter(record)
        for record in (retry_record(1, "/api/v1/nodes"), retry_record(1, "/apis/apps/v1/daemonsets"))
    ]
    assert passed == [True, False]
    clock.now += 3
    second = retry_record(2, "/apis/apps/v1/daemonsets")
    assert log_filter.filter(second)
    assert second.getMessage() == (
        "the API server is unavailable since 1970-01-12T13:46:40Z (retry round 2; "
        "GET /apis/apps/v1/daemonsets failed: APIServerError('down'))"
    )
    assert health.report()["apiUnavailableSince"] == "1970-01-12T13:46:40Z"
    health.heard("nodes")  # back
    assert health.report()["apiUnavailableSince"] is None
    assert log_filter.filter(retry_record(1, "/api/v1/nodes"))  # a new outage
    other = logging.LogRecord("kopf", logging.ERROR, __file__, 1, "something else", None, None)
    assert log_filter.filter(other)
