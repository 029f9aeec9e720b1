"""Whether the operator still hears from the API server: each watch's last event (bookmarks included), and API
outages as kopf's request retries show them, logged once per retry round.

The liveness probe fails only where a restart helps: a watch that has heard nothing, not even a bookmark, for
``stuck_seconds`` while no request is being retried (during an outage every watch is silent, and a restart would
not bring the API server back).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

RETRY = re.compile(
    r"Request attempt #(?P<attempt>\d+)(?:/\d+)? failed; (?:will retry|escalating): "
    r"(?P<what>\S+ \S+)(?: -> (?P<error>.*))?",
    re.DOTALL,
)
QUIET_SECONDS = 60.0
"""An outage is over once the API server is heard from again, or after this long without a failed retry."""


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiHealth:
    """Thread-safe; ``clock`` is wall-clock seconds."""

    def __init__(self, resources: Iterable[str], stuck_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.stuck_seconds = stuck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        started = clock()
        self._heard: dict[str, float] = dict.fromkeys(resources, started)
        self._outage_since: float | None = None
        self._last_retry = 0.0
        self._round = 0
        self.on_heard: Callable[[str, float], None] = lambda _resource, _moment: None
        """Called with each resource heard from and the time (the metric)."""

    def heard(self, resource: str) -> None:
        """A watch event (or bookmark) of ``resource`` arrived: its watch is alive, and the API server is up."""
        now = self._clock()
        with self._lock:
            self._heard[resource] = now
            self._outage_since = None
        self.on_heard(resource, now)

    def retry_failed(self, attempt: int) -> tuple[float, bool]:
        """A request failed and is retried: when the outage began, and whether this attempt opens a new round."""
        now = self._clock()
        with self._lock:
            if self._outage_since is None or now - self._last_retry > QUIET_SECONDS:
                self._outage_since, self._round = now, 0
            self._last_retry = now
            new_round = attempt > self._round
            self._round = max(self._round, attempt)
            return self._outage_since, new_round

    def stuck(self) -> list[str]:
        """Watches silent for longer than ``stuck_seconds`` while nothing is being retried."""
        now = self._clock()
        with self._lock:
            if now - self._last_retry <= QUIET_SECONDS:
                return []
            return sorted(r for r, moment in self._heard.items() if now - moment > self.stuck_seconds)

    def report(self) -> dict[str, Any]:
        """The health body: each watch's last contact, and the outage under way if any."""
        now = self._clock()
        with self._lock:
            watches = {
                resource: {"lastHeard": _iso(moment), "secondsAgo": round(now - moment, 1)}
                for resource, moment in sorted(self._heard.items())
            }
            outage = self._outage_since
        return {"watches": watches, "apiUnavailableSince": None if outage is None else _iso(outage)}


class OutageLogFilter(logging.Filter):
    """Collapses kopf's per-request retry errors (one per watch per attempt) into one line per retry round that says
    what is down and since when; every other record passes unchanged."""

    def __init__(self, health: ApiHealth) -> None:
        super().__init__()
        self.health = health

    def filter(self, record: logging.LogRecord) -> bool:
        match = RETRY.match(record.getMessage())
        if match is None:
            return True
        since, new_round = self.health.retry_failed(int(match["attempt"]))
        if not new_round:
            return False
        record.msg = "the API server is unavailable since %s (retry round %s; %s failed: %s)"
        record.args = (_iso(since), match["attempt"], match["what"], match["error"] or "no answer")
        return True
