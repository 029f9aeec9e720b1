"""A disruption controller: keeps the status of PodDisruptionBudgets current as pods come and go, so that
``kubectl get pdb`` and clients reading ``status.disruptionsAllowed`` see what a cluster would show."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubesim.resource_keys import BUDGETS, PODS
from kubesim.store import Store

JsonObject = dict[str, Any]


class DisruptionController:
    """Recomputes the budgets of a namespace once per loop iteration after any pod or budget there changed."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._dirty: set[str] = set()
        self._scheduled: asyncio.Handle | None = None
        self._budgets = store.resolve(BUDGETS)
        self._unsubscribe: list[Callable[[], None]] = [
            store.listen(store.resolve(resource), self._changed) for resource in (PODS, BUDGETS)
        ]
        for budget in store.iter_raw(self._budgets, None):
            self._changed("ADDED", budget)

    def _changed(self, _: str, obj: JsonObject) -> None:
        namespace = obj["metadata"].get("namespace", "")
        if obj.get("kind") == "Pod" and next(self._store.iter_raw(self._budgets, namespace), None) is None:
            return
        self._dirty.add(namespace)
        if self._scheduled is None:
            self._scheduled = self._loop.call_soon(self._sync)

    def _sync(self) -> None:
        self._scheduled = None
        dirty, self._dirty = self._dirty, set()
        for namespace in sorted(dirty):
            for budget in list(self._store.iter_raw(self._budgets, namespace)):
                if "deletionTimestamp" not in budget["metadata"]:
                    self._store.refresh_budget(budget)

    def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
