"""A task another process has claimed is never removed, by retention or by disk pressure."""

from __future__ import annotations

from cleaner_helpers import claimed_by_another_process, clock_at, config_for, full_disk, make_task

from mercure.cleaner.cleaner import Cleaner
from mercure.core.datafolder import DataFolder, Stage

MONTH = 30 * 86400.0


def test_claimed_task_is_never_removed(data: DataFolder) -> None:
    """Overdue and under disk pressure, a claimed task stays until its holder lets go."""
    held = make_task(data, Stage.ERROR, "requeueing")
    content = sorted(path.name for path in held.iterdir())
    make_task(data, Stage.ERROR, "free")
    config = config_for(
        data, cleaner={"disk_threshold_percent": 50, "disk_pressure_deletes_errors": True}
    )
    always_full = Cleaner(data, None, clock=clock_at(MONTH), probe=full_disk)
    with claimed_by_another_process(held):
        report = always_full.run_pass(config, ignore_window=True)
        assert [r.where for r in report.removals] == ["error/free"]
        assert report.claimed == ["error/requeueing"]
        dry = always_full.run_pass(config, ignore_window=True, dry_run=True)
        assert dry.removals == [] and "error/requeueing" in dry.claimed
        assert [path.name for path in data.entries(Stage.ERROR)] == ["requeueing"]
        assert sorted(p.name for p in held.iterdir()) == content
    report = always_full.run_pass(config, ignore_window=True)
    assert [r.where for r in report.removals] == ["error/requeueing"]
