"""Fault injection into kubesim's API: errors, latency and dropped watches, switched at run time."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from kubesim.errors import ApiError

JsonObject = dict[str, Any]


@dataclass
class FaultSettings:
    """Faults injected into resource requests; change them at any time, they apply to the next request."""

    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500, 429, 409)
    latency_seconds: float = 0.0
    # Probability, per delivered watch event, that the stream is cut just before the event.
    watch_drop_rate: float = 0.0
    # Restrict faults to these verbs (get, list, watch, create, update, patch, delete, ...) and resource plurals.
    verbs: frozenset[str] = field(default_factory=frozenset)
    resources: frozenset[str] = field(default_factory=frozenset)
    random: random.Random = field(default_factory=lambda: random.Random(0))
    # How many errors have been injected so far.
    injected: int = 0

    def to_json(self) -> JsonObject:
        return {
            "errorRate": self.error_rate,
            "errorCodes": list(self.error_codes),
            "latencySeconds": self.latency_seconds,
            "watchDropRate": self.watch_drop_rate,
            "verbs": sorted(self.verbs),
            "resources": sorted(self.resources),
            "injected": self.injected,
        }

    def update(self, settings: JsonObject) -> None:
        self.error_rate = float(settings.get("errorRate", self.error_rate))
        self.error_codes = tuple(int(c) for c in settings.get("errorCodes", self.error_codes))
        self.latency_seconds = float(settings.get("latencySeconds", self.latency_seconds))
        self.watch_drop_rate = float(settings.get("watchDropRate", self.watch_drop_rate))
        self.verbs = frozenset(settings.get("verbs", self.verbs))
        self.resources = frozenset(settings.get("resources", self.resources))

    def applies(self, verb: str, plural: str) -> bool:
        return (not self.verbs or verb in self.verbs) and (not self.resources or plural in self.resources)

    def injected_error(self, verb: str, plural: str) -> ApiError | None:
        if self.error_rate <= 0 or not self.applies(verb, plural) or self.random.random() >= self.error_rate:
            return None
        code = self.random.choice(self.error_codes)
        self.injected += 1
        if code == 429:
            return ApiError(429, "TooManyRequests", "injected fault: too many requests", {"retryAfterSeconds": 1})
        if code == 409:
            return ApiError(409, "Conflict", "injected fault: the object has been modified")
        return ApiError(code, "InternalError", "injected fault: an error on the server has prevented the request")
