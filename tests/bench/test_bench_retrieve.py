"""bench/bench_retrieve.py still runs: five CT instances, one round, every case printed.

The figures are not checked (benchmarks are measured, never asserted; docs/performance.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_retrieve.py"


@pytest.mark.slow
@pytest.mark.peers
def test_retrieve_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    """C-GET and C-MOVE, mercure and DCMTK, each once with five instances."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "--ct", "5", "--rounds", "1", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("getscu -> folder", "mercure C-GET", "movescu +P", "mercure C-MOVE / movescu"):
        assert line in result.stdout, result.stdout
