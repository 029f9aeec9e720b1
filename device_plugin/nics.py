"""Live list of network interfaces from rtnetlink, for NIC discovery without restarts.

The monitor subscribes to link events, dumps the links once, then follows RTM_NEWLINK/RTM_DELLINK, so a NIC that
appears or disappears (driver bound or unbound, hot-plug, module reload) reaches the device list immediately.
It speaks rtnetlink through a plain socket: only interface indexes and names are read, which needs no netlink
library in a process that runs on every node.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFLA_IFNAME = 3

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change mask
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type
_RECEIVE_SIZE = 1 << 16


def _aligned(length: int) -> int:
    return (length + 3) & ~3


def parse_messages(data: bytes) -> Iterator[tuple[int, int | None, str | None]]:
    """(message type, interface index, interface name) for each message in ``data``; None where absent."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _sequence, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            return
        body = offset + _HEADER.size
        index: int | None = None
        name: str | None = None
        if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= _HEADER.size + _IFINFO.size:
            index = _IFINFO.unpack_from(data, body)[2]
            attribute = body + _IFINFO.size
            while attribute + _ATTRIBUTE.size <= offset + length:
                size, attribute_type = _ATTRIBUTE.unpack_from(data, attribute)
                if size < _ATTRIBUTE.size:
                    break
                if attribute_type == IFLA_IFNAME:
                    raw = data[attribute + _ATTRIBUTE.size : attribute + size]
                    name = raw.split(b"\0", 1)[0].decode(errors="replace")
                attribute += _aligned(size)
        yield kind, index, name
        offset += _aligned(length)


class LinkMonitor:
    """Keeps ``names`` equal to the interface names of this network namespace and calls ``on_change``."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.names: frozenset[str] = frozenset()
        self.ready = asyncio.Event()
        self._on_change = on_change

    async def run(self) -> None:
        """Follow link events until cancelled; starts over with back-off if netlink fails."""
        delay = 0.2
        while True:
            try:
                await self._follow()
            except OSError as exc:
                log.error("netlink link monitor failed; retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as sock:
            sock.setblocking(False)
            # Subscribe before the dump so that no event between the two is lost.
            sock.bind((0, RTMGRP_LINK))
            current: dict[int, str] = {}
            listing: dict[int, str] | None = {}
            """The links of a dump in progress; they replace ``current`` once the dump is complete."""
            sock.send(_dump_request())
            while True:
                try:
                    data = await loop.sock_recv(sock, _RECEIVE_SIZE)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    # Events were dropped: list the links again, keeping the last picture until that is done.
                    log.warning("netlink events overflowed; listing the links again")
                    listing = {}
                    sock.send(_dump_request())
                    continue
                dump_done = _apply(data, current if listing is None else listing)
                if listing is not None and dump_done:
                    current, listing = listing, None
                if listing is None:
                    self._set(current)

    def _set(self, by_index: dict[int, str]) -> None:
        """Index-keyed so that a rename (a NEWLINK with a new name) replaces the old name."""
        names = frozenset(by_index.values())
        self.ready.set()
        if names != self.names:
            log.debug("interfaces now %s", sorted(names))
            self.names = names
            self._on_change()


def _apply(data: bytes, by_index: dict[int, str]) -> bool:
    """Apply the link messages in ``data`` to ``by_index``; True if they include the end of a dump."""
    dump_done = False
    for kind, index, name in parse_messages(data):
        if kind == NLMSG_DONE:
            dump_done = True
        elif kind == NLMSG_ERROR:
            raise OSError(f"netlink answered the link dump with an error: {data[:64].hex()}")
        elif kind == RTM_DELLINK and index is not None:
            by_index.pop(index, None)
        elif kind == RTM_NEWLINK and index is not None and name is not None:
            by_index[index] = name
    return dump_done


def _dump_request() -> bytes:
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return _HEADER.pack(_HEADER.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body
