"""Reading the small text files of the host (sysfs, procfs) that may be missing or unreadable."""

from __future__ import annotations


def read_text(path: str) -> str | None:
    """The file's text with undecodable bytes replaced, or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None
