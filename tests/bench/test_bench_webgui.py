"""bench/bench_webgui.py still runs: at a tiny size, on SQLite, every section printed.

The figures are not checked (benchmarks are measured, never asserted; docs/performance.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_webgui.py"


@pytest.mark.slow
def test_webgui_bench_runs_at_a_tiny_size() -> None:
    """A few thousand events, three requests per page, two tabs for two seconds."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "--backend", "sqlite", "--events", "3000",
         "--requests", "3", "--tabs", "2", "--tabs-seconds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("overview /", "fragment services", "task detail", "live refresh", "2   tabs"):
        assert line in result.stdout, result.stdout
