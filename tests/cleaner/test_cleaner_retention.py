"""Retention by age per stage, what age means, and the stages the cleaner never touches."""

from __future__ import annotations

import os
import time

from cleaner_helpers import EventLog, clock_at, config_for, full_disk, make_task

from mercure.cleaner.cleaner import Cleaner
from mercure.cleaner.retained import entered_stage_at
from mercure.core.config.models import CleanerConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.task import move_task
from mercure.testing.wait import wait_until

DAY = 86400.0


def names(data: DataFolder, stage: Stage) -> list[str]:
    """Names of the visible entries of a stage."""
    return [path.name for path in data.entries(stage)]


def test_defaults_keep_success_and_discard_three_days_and_errors_fourteen() -> None:
    """The default retentions are the ones the issue names."""
    defaults = CleanerConfig()
    assert (defaults.success_retention, defaults.discard_retention) == (3 * DAY, 3 * DAY)
    assert defaults.error_retention == 14 * DAY


def test_each_stage_keeps_tasks_for_its_own_retention(data: DataFolder) -> None:
    """success/, discard/ and error/ each lose their tasks at their own age, not before."""
    for stage in (Stage.SUCCESS, Stage.DISCARD, Stage.ERROR):
        make_task(data, stage, f"{stage.value}-task")
    config = config_for(
        data,
        cleaner={"success_retention": "1d", "discard_retention": "2d", "error_retention": "3d"},
    )

    def clean_at(offset: float) -> list[str]:
        report = Cleaner(data, None, clock=clock_at(offset)).run_pass(config, ignore_window=True)
        return [removal.where for removal in report.removals]

    assert clean_at(0.9 * DAY) == []
    assert clean_at(1.1 * DAY) == ["success/success-task"]
    assert clean_at(1.9 * DAY) == []
    assert clean_at(2.1 * DAY) == ["discard/discard-task"]
    assert clean_at(2.9 * DAY) == []
    assert clean_at(3.1 * DAY) == ["error/error-task"]
    assert all(names(data, stage) == [] for stage in Stage)


def test_stages_before_delivery_are_never_cleaned(data: DataFolder) -> None:
    """incoming/, studies/, processing/ and outgoing/ survive any age and any disk pressure."""
    early = [Stage.INCOMING, Stage.STUDIES, Stage.PROCESSING, Stage.OUTGOING]
    for stage in early:
        make_task(data, stage, f"{stage.value}-task", size=1000)
    make_task(data, Stage.ERROR, "error-task", size=1000)
    config = config_for(
        data, cleaner={"disk_threshold_percent": 1, "disk_pressure_deletes_errors": True}
    )
    full = Cleaner(data, None, clock=clock_at(365 * DAY), probe=full_disk)
    report = full.run_pass(config, ignore_window=True)
    assert [removal.where for removal in report.removals] == ["error/error-task"]
    assert all(names(data, stage) == [f"{stage.value}-task"] for stage in early)


def test_age_counts_from_entering_the_stage_not_from_file_times(data: DataFolder) -> None:
    """A task whose files carry year-old mtimes (copied with times kept) is young in its stage."""
    task = make_task(data, Stage.SUCCESS, "copied", files=3)
    year_ago = time.time() - 365 * DAY
    for path in [task, *task.iterdir()]:
        os.utime(path, (year_ago, year_ago))
    config = config_for(data, cleaner={"success_retention": "1d"})
    young = Cleaner(data, None, clock=clock_at(DAY / 2)).run_pass(config, ignore_window=True)
    assert young.removals == []
    due = Cleaner(data, None, clock=clock_at(1.5 * DAY)).run_pass(config, ignore_window=True)
    assert [removal.where for removal in due.removals] == ["success/copied"]


def test_moving_a_task_into_a_stage_restarts_its_age(data: DataFolder) -> None:
    """The rename that hands a task to success/ renews its folder's ctime on this filesystem."""
    task = make_task(data, Stage.OUTGOING, "sent")
    before = entered_stage_at(task)
    wait_until(lambda: time.time() > before + 0.02, timeout=2)
    moved = move_task(task, data, Stage.SUCCESS)
    assert entered_stage_at(moved) > before + 0.01


def test_each_removed_task_is_reported_with_stage_age_size_and_reason(
    data: DataFolder, event_log: EventLog
) -> None:
    """Every removal emits one task.cleaned event the bookkeeper can file under the task."""
    task = make_task(data, Stage.SUCCESS, "done", size=4096, files=2)
    size = sum(path.stat().st_size for path in task.iterdir())
    config = config_for(data, cleaner={"success_retention": "1d"})
    cleaner = Cleaner(data, event_log.client, clock=clock_at(2 * DAY))
    cleaner.run_pass(config, ignore_window=True)
    [event] = event_log.events("task.cleaned")
    assert event.task_id == "done" and event.series_uid == "1.2.826.0.1.4"
    assert event.data["from_stage"] == "success" and event.data["reason"] == "retention"
    assert event.data["bytes"] == size
    assert 2 * DAY - 60 < event.data["age"] < 2 * DAY + 60
    assert not event_log.events("cleaner.disk_pressure")
