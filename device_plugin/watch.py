"""Wait for changes in a few directories without polling: Linux inotify through ctypes, driven by asyncio.

inotify wakes the process only when a watched entry is created, deleted or renamed, so an idle plugin costs
no CPU; metadata changes (chmod, chown, xattrs, touch) are not watched, as they never mean that a file was
replaced; there is no extra dependency. Where inotify cannot be used (no
inotify support, a watched directory that does not exist yet, or was removed) :meth:`DirectoryWatch.wait`
degrades to waking every ``poll_interval`` seconds so the caller's state check still runs.
Callers always re-check the state they care about after a wake-up: events are hints, not facts.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
from collections.abc import Iterable

log = logging.getLogger(__name__)

IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_ENTRY_EVENTS = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_SELF_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW | IN_IGNORED
_EVENT_HEADER = struct.Struct("iIII")


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


class DirectoryWatch:
    """Wake up when entries named ``names`` (any entry if None) change in any of ``directories``."""

    def __init__(
        self, directories: Iterable[str], names: Iterable[str] | None = None, poll_interval: float = 0.2
    ) -> None:
        self._directories = list(dict.fromkeys(directories))
        self._names = {name.encode() for name in names} if names is not None else None
        self._poll_interval = poll_interval
        self._changed = asyncio.Event()
        self._created: set[str] = set()
        self._watches: dict[int, str] = {}
        self._fd = -1
        if _LIBC is not None:
            fd = _LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                asyncio.get_running_loop().add_reader(fd, self._drain)
            else:
                log.warning("inotify unavailable (%s); polling instead", os.strerror(ctypes.get_errno()))
        self._add_missing_watches()

    @property
    def uses_inotify(self) -> bool:
        """True while every directory is watched by inotify (no periodic wake-ups)."""
        return self._fd >= 0 and len(self._watches) == len(self._directories)

    def _add_missing_watches(self) -> None:
        if self._fd < 0 or _LIBC is None:
            return
        watched = set(self._watches.values())
        for directory in self._directories:
            if directory in watched:
                continue
            wd = _LIBC.inotify_add_watch(self._fd, os.fsencode(directory), _ENTRY_EVENTS | _SELF_EVENTS | IN_ONLYDIR)
            if wd >= 0:
                self._watches[wd] = directory

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                log.exception("reading inotify events failed")
                return
            if not data:
                return
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT_HEADER.size <= len(data):
            wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
            name = data[offset + _EVENT_HEADER.size : offset + _EVENT_HEADER.size + length].rstrip(b"\0")
            offset += _EVENT_HEADER.size + length
            if mask & IN_IGNORED:
                self._watches.pop(wd, None)
            if mask & _SELF_EVENTS or self._names is None or name in self._names:
                self._changed.set()
                if mask & (IN_CREATE | IN_MOVED_TO):
                    self._created.add(os.fsdecode(name))

    def take_created(self) -> frozenset[str]:
        """Names created or moved in since the last call; empty while polling (compare file identities then)."""
        created, self._created = frozenset(self._created), set()
        return created

    async def wait(self, at_most: float | None) -> bool:
        """Wait for a change or ``at_most`` seconds (None waits forever); True if a change was seen."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # A cancellation was requested but swallowed by a library call (grpc.aio can turn one into an
            # RPC error); honour it here so the caller's loop ends.
            raise asyncio.CancelledError
        self._add_missing_watches()
        if not self.uses_inotify:
            at_most = self._poll_interval if at_most is None else min(at_most, self._poll_interval)
        # asyncio.timeout rather than wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives together with the event, which would keep a stopping task alive.
        try:
            async with asyncio.timeout(at_most):
                await self._changed.wait()
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    def close(self) -> None:
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._watches.clear()
