"""Waiting for a condition with a deadline: tests, benchmarks and tools poll the API rather than sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float = 20.0, message: str = "", interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value; fail after ``timeout`` s.

    An assertion, an API error or a missing key raised by ``predicate`` counts as "not yet" (the last one is
    reported on time-out): objects a test waits for often do not exist at first.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last = result
        except (AssertionError, ApiException, KeyError) as error:
            last = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate!r}: last {last!r}")
        time.sleep(interval)
