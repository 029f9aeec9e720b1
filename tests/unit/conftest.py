"""Unit tests of the operator's pure layers."""

from __future__ import annotations

import sys
from pathlib import Path

# The suite imports test modules in importlib mode; the shared helpers are imported as ``tests.<dir>.<module>``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
