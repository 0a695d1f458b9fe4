"""Retention runs only in the cleaning window: cleaner.window, else the offpeak window."""

from __future__ import annotations

import pytest
from cleaner_helpers import clock_at, config_for, make_task

from mercure.cleaner.cleaner import Cleaner
from mercure.core.datafolder import DataFolder, Stage

MONTH = 30 * 86400.0


@pytest.mark.parametrize(
    ("hour", "removed"), [(12, False), (21, False), (22, True), (3, True), (6, False)]
)
def test_retention_waits_for_the_offpeak_window(data: DataFolder, hour: int, removed: bool) -> None:
    """With no cleaner.window, overdue tasks go only inside offpeak (22:00-06:00 by default)."""
    make_task(data, Stage.SUCCESS, "overdue")
    config = config_for(data)
    report = Cleaner(data, None, clock=clock_at(MONTH, hour=hour)).run_pass(config)
    assert report.window_open is removed
    assert bool(report.removals) is removed
    assert bool(data.entries(Stage.SUCCESS)) is not removed


def test_cleaner_window_overrides_offpeak(data: DataFolder) -> None:
    """cleaner.window replaces the offpeak window for cleaning."""
    make_task(data, Stage.DISCARD, "overdue")
    config = config_for(
        data,
        offpeak={"start": "22:00", "end": "06:00"},
        cleaner={"window": {"start": "12:00", "end": "13:00"}},
    )
    assert Cleaner(data, None, clock=clock_at(MONTH, hour=23)).run_pass(config).removals == []
    noon = Cleaner(data, None, clock=clock_at(MONTH, hour=12)).run_pass(config)
    assert [removal.where for removal in noon.removals] == ["discard/overdue"]
