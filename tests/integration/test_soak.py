"""The chaos soak in CI: 90 seconds of a steady stream while services die (bench/soak.py runs 10).

What it checks is in mercure.testing.soak and docs/testing.md: no acknowledged instance lost or
stuck, duplicates only of instances in flight at a kill or outage, and the bookkeeper's counts
agree with the data folder.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mercure.testing.soak import SoakSettings, run_soak

SECONDS = float(os.environ.get("MERCURE_SOAK_SECONDS", "90"))
SEED = int(os.environ.get("MERCURE_SOAK_SEED", "0")) or random.randrange(1, 1 << 16)
"""A new kill schedule each run (set MERCURE_SOAK_SEED to repeat one from a report)."""


@pytest.mark.slow
@pytest.mark.peers
def test_nothing_is_lost_or_stuck_while_services_die(tmp_path: Path) -> None:
    """Kills every few seconds, Orthanc and the bookkeeper each stopped twice for a while."""
    lines = [f"MERCURE_SOAK_SEED={SEED}"]
    report = run_soak(tmp_path, SoakSettings(seconds=SECONDS, seed=SEED), lines.append)
    print("\n".join(lines))
    print(report.render())
    assert report.acknowledged > 500, report.render()
    assert sum(report.kills.values()) >= SECONDS / 10, report.kills
    assert report.outages == {"orthanc": 2, "bookkeeper": 2}
    assert report.notifying_tasks > 0, report.render()
    assert report.passed, f"MERCURE_SOAK_SEED={SEED}\n" + report.render()
