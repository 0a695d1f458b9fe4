"""Disk pressure on a real 4 MiB tmpfs (or, where no tmpfs can be mounted, an injected probe)."""

from __future__ import annotations

import pytest
from cleaner_helpers import EventLog, SmallFilesystem, clock_at, config_for, make_task

from mercure.cleaner.cleaner import Cleaner
from mercure.core.datafolder import DataFolder, Stage

EIGHTH = 512 << 10  # each task fills an eighth of the 4 MiB filesystem


def filled(small_fs: SmallFilesystem) -> DataFolder:
    """Six tasks of an eighth each (75 %): two success, one discard, one error, two in work."""
    data = DataFolder(small_fs.root / "data")
    data.ensure()
    # Created oldest first; names sort the other way so that order cannot come from names.
    make_task(data, Stage.SUCCESS, "b-older", size=EIGHTH)
    make_task(data, Stage.ERROR, "error-task", size=EIGHTH)
    make_task(data, Stage.SUCCESS, "a-newer", size=EIGHTH)
    make_task(data, Stage.DISCARD, "discarded", size=EIGHTH)
    make_task(data, Stage.OUTGOING, "sending", size=EIGHTH)
    make_task(data, Stage.PROCESSING, "running", size=EIGHTH)
    return data


def remaining(data: DataFolder) -> list[str]:
    """``stage/name`` of every visible task."""
    return [f"{stage.value}/{path.name}" for stage in Stage for path in data.entries(stage)]


def test_disk_pressure_removes_oldest_success_then_discard_until_below_target(
    small_fs: SmallFilesystem,
) -> None:
    """Over the threshold, at noon, young tasks go: success oldest first, then discard."""
    data = filled(small_fs)
    assert small_fs.probe().percent >= 70
    config = config_for(data, cleaner={"disk_threshold_percent": 70, "disk_margin_percent": 25})
    events = EventLog(data)
    cleaner = Cleaner(data, events.client, clock=clock_at(hour=12), probe=small_fs.probe)
    report = cleaner.run_pass(config)
    assert not report.window_open and report.pressure
    assert [r.where for r in report.removals] == [
        "success/b-older",
        "success/a-newer",
        "discard/discarded",
    ]
    assert {r.reason.value for r in report.removals} == {"disk_pressure"}
    assert remaining(data) == ["processing/running", "outgoing/sending", "error/error-task"]
    assert small_fs.probe().percent < 45
    cleaned = events.events("task.cleaned")
    assert [(e.task_id, e.data["reason"]) for e in cleaned] == [
        ("b-older", "disk_pressure"),
        ("a-newer", "disk_pressure"),
        ("discarded", "disk_pressure"),
    ]
    [summary] = events.events("cleaner.disk_pressure")
    assert summary.severity == "warning"
    assert summary.data["task_ids"] == [r.where for r in report.removals]
    assert summary.data["removed"] == {"success": 2, "discard": 1}
    events.close()


@pytest.mark.parametrize("errors_allowed", [False, True])
def test_disk_pressure_removes_errors_only_when_allowed(
    small_fs: SmallFilesystem, errors_allowed: bool
) -> None:
    """error/ goes under pressure only with disk_pressure_deletes_errors; work stages never."""
    data = filled(small_fs)
    config = config_for(
        data,
        cleaner={
            "disk_threshold_percent": 70,
            "disk_margin_percent": 60,
            "disk_pressure_deletes_errors": errors_allowed,
        },
    )
    report = Cleaner(data, None, clock=clock_at(hour=12), probe=small_fs.probe).run_pass(config)
    expected = ["success/b-older", "success/a-newer", "discard/discarded"]
    if errors_allowed:
        expected.append("error/error-task")
    assert [r.where for r in report.removals] == expected
    assert "outgoing/sending" in remaining(data) and "processing/running" in remaining(data)
    assert ("error/error-task" in remaining(data)) is not errors_allowed


def test_dry_run_under_pressure_lists_what_the_pass_then_removes(
    small_fs: SmallFilesystem,
) -> None:
    """The dry run's projection picks the same tasks the real pass deletes, and deletes none."""
    data = filled(small_fs)
    config = config_for(data, cleaner={"disk_threshold_percent": 70, "disk_margin_percent": 25})
    cleaner = Cleaner(data, None, clock=clock_at(hour=12), probe=small_fs.probe)
    before = remaining(data)
    dry = cleaner.run_pass(config, dry_run=True)
    assert remaining(data) == before
    real = cleaner.run_pass(config)
    assert [r.where for r in dry.removals] == [r.where for r in real.removals]
    assert len(real.removals) == 3


def test_pressure_nothing_can_relieve_is_reported_once(small_fs: SmallFilesystem) -> None:
    """When only undeliverable work fills the disk, one warning says so, not one per pass."""
    data = DataFolder(small_fs.root / "data")
    data.ensure()
    for name in ("one", "two", "three"):
        make_task(data, Stage.OUTGOING, name, size=EIGHTH)
    config = config_for(data, cleaner={"disk_threshold_percent": 30})
    events = EventLog(data)
    cleaner = Cleaner(data, events.client, clock=clock_at(hour=12), probe=small_fs.probe)
    for _ in range(3):
        assert cleaner.run_pass(config).removals == []
    [warning] = events.events("cleaner.disk_pressure")
    assert "nothing more may be removed" in warning.message
    events.close()


def test_retention_in_the_same_pass_counts_towards_relief(small_fs: SmallFilesystem) -> None:
    """Overdue tasks removed by retention relieve the pressure; nothing young goes with them."""
    data = filled(small_fs)
    config = config_for(data, cleaner={"disk_threshold_percent": 70, "disk_margin_percent": 25})
    events = EventLog(data)
    five_days_at_night = clock_at(5 * 86400, hour=23)
    cleaner = Cleaner(data, events.client, clock=five_days_at_night, probe=small_fs.probe)
    report = cleaner.run_pass(config)
    assert report.window_open and report.pressure
    assert [(r.where, r.reason.value) for r in report.removals] == [
        ("success/b-older", "retention"),
        ("success/a-newer", "retention"),
        ("discard/discarded", "retention"),
    ]
    assert "error/error-task" in remaining(data)
    assert events.events("cleaner.disk_pressure") == []
    events.close()
