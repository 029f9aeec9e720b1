"""Run every ``bench/bench_*.py`` and write their Markdown sections into BENCHMARKS.md (``make bench``)."""

import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kept_sections(text: str, written: list[str]) -> list[str]:
    """Sections of the current file that no benchmark script writes (the image sizes, measured by
    ``make images``, which needs buildah): kept as they are, with the command each names."""
    headings = {section.splitlines()[0] for section in written}
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    return [part.strip() for part in parts if part.startswith("## ") and part.splitlines()[0] not in headings]


def main() -> None:
    sections = []
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        print(f"running {script.name}", file=sys.stderr, flush=True)
        result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, check=True)
        sections.append(result.stdout.strip())
    target = ROOT / "BENCHMARKS.md"
    sections += kept_sections(target.read_text() if target.exists() else "", sections)
    header = (
        "# Benchmarks\n\n"
        "Written by `make bench` (`bench/run.py`), which runs every `bench/bench_*.py`; each section names the "
        "command that produced it.\n\n"
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"Python {platform.python_version()}, {len(os.sched_getaffinity(0))} cores.\n"
    )
    target.write_text(header + "\n" + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
