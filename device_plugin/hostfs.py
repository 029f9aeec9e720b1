"""Reading the host's small text files (sysfs, procfs) and file identities, any of which may be missing."""

from __future__ import annotations

import os


def read_text(path: str) -> str | None:
    """The file's text with undecodable bytes replaced, or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


FileIdentity = tuple[int, int]
"""(device, inode): what makes a file the same file, whatever its mode, owner or attributes."""


def file_identity(path: str, follow_symlinks: bool = True) -> FileIdentity | None:
    try:
        stat = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)
