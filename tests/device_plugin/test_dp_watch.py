"""DirectoryWatch: inotify wake-ups for the watched names only, and the polling fallback."""

from __future__ import annotations

import asyncio
import os
import shutil

from device_plugin.watch import DirectoryWatch
from tests.device_plugin.dp_helpers import HostTree, touch


async def test_wakes_for_watched_names_only(host: HostTree) -> None:
    watch = DirectoryWatch([host.dev], names=["onload"])
    try:
        assert watch.uses_inotify
        touch(os.path.join(host.dev, "tty0"))
        assert await watch.wait(0.2) is False
        touch(os.path.join(host.dev, "onload"))
        assert await watch.wait(5.0) is True
        os.unlink(os.path.join(host.dev, "onload"))
        assert await watch.wait(5.0) is True
        assert await watch.wait(0.05) is False
    finally:
        watch.close()


async def test_missing_directory_polls_until_it_appears(host: HostTree) -> None:
    later = os.path.join(host.dev, "later")
    watch = DirectoryWatch([later], names=["onload"], poll_interval=0.05)
    try:
        assert not watch.uses_inotify
        # Polling mode: a long wait returns after the poll interval so the caller re-checks.
        assert await asyncio.wait_for(watch.wait(None), 2.0) is False
        os.mkdir(later)
        await watch.wait(0.01)
        assert watch.uses_inotify
        touch(os.path.join(later, "onload"))
        assert await watch.wait(5.0) is True
        # The directory goes away: back to polling.
        shutil.rmtree(later)
        await watch.wait(5.0)
        await watch.wait(0.01)
        assert not watch.uses_inotify
    finally:
        watch.close()
