"""Live list of network interfaces from netlink (pyroute2), for NIC discovery without restarts.

The monitor dumps the links once, then follows RTM_NEWLINK/RTM_DELLINK events, so a NIC that appears or
disappears (driver bound or unbound, hot-plug, module reload) reaches the device list immediately.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pyroute2 import AsyncIPRoute

log = logging.getLogger(__name__)


class LinkMonitor:
    """Keeps ``names`` equal to the interface names of this network namespace and calls ``on_change``."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.names: frozenset[str] = frozenset()
        self.ready = asyncio.Event()
        self._on_change = on_change

    async def run(self) -> None:
        """Follow link events until cancelled; reconnects with back-off if netlink fails."""
        delay = 0.2
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("netlink link monitor failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _follow(self) -> None:
        events = AsyncIPRoute()
        try:
            # Subscribe before the dump so no event between the two is lost.
            await events.bind()
            dump = AsyncIPRoute()
            try:
                await dump.setup_endpoint()
                by_index = {link["index"]: str(link.get("ifname")) async for link in await dump.get_links()}
            finally:
                dump.close()
            self._set(by_index)
            while True:
                async for message in events.get():
                    name = message.get("ifname")
                    if message.get("event") == "RTM_DELLINK":
                        by_index.pop(message["index"], None)
                    elif message.get("event") == "RTM_NEWLINK" and name is not None:
                        by_index[message["index"]] = str(name)
                self._set(by_index)
        finally:
            events.close()

    def _set(self, by_index: dict[int, str]) -> None:
        """Index-keyed so that a rename (a NEWLINK with a new name) replaces the old name."""
        names = frozenset(by_index.values())
        self.ready.set()
        if names != self.names:
            log.debug("interfaces now %s", sorted(names))
            self.names = names
            self._on_change()
