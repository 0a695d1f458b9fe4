"""bench/bench_receiver.py still runs: a few instances, one round, every case printed.

The figures are not checked (benchmarks are measured, never asserted; docs/performance.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_receiver.py"


@pytest.mark.slow
@pytest.mark.peers
def test_receiver_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    """storescp, storescp --fork (durable too) and the receiver, one and two associations, idle
    and beside the CPU load; the cost of creating a file in each side's folder is printed."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--ct", "4", "--tiny", "10", "--rounds", "1", "--big-mb", "0"),
            *("--associations", "2", "--load", "--work", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "creating a file (median of 200): storescp ",
        "mercure/storescp + fsync, 1 association:",
        "mercure/storescp --fork + fsync, 2 associations:",
        "tiny 64x64 beside a CPU load",
        "structure check:",
    ):
        assert line in result.stdout, result.stdout
