"""``mercure clean``: the dry run removes nothing and lists exactly what a real run removes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cleaner_helpers import (
    claimed_by_another_process,
    make_task,
    outbox_events,
    window_around_now,
    window_closed_now,
    write_config,
)

from mercure.core.datafolder import DataFolder, Stage


def clean(config: Path, *options: str) -> list[str]:
    """Run ``mercure clean`` and return its output lines."""
    command = [sys.executable, "-m", "mercure", "clean", "--config", str(config), *options]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
    return result.stdout.splitlines()


def listed(lines: list[str], verb: str) -> list[str]:
    """The ``stage/task`` of each line that starts with ``verb``."""
    return [line.removeprefix(verb + " ").split()[0] for line in lines if line.startswith(verb)]


def visible(data: DataFolder) -> list[str]:
    """``stage/name`` of every visible task."""
    return [f"{stage.value}/{path.name}" for stage in Stage for path in data.entries(stage)]


def test_dry_run_lists_exactly_what_clean_removes(data: DataFolder, tmp_path: Path) -> None:
    """The dry run names the due tasks with reasons and removes none; clean then removes them."""
    for stage, name in [
        (Stage.SUCCESS, "s1"),
        (Stage.SUCCESS, "s2"),
        (Stage.SUCCESS, "held"),
        (Stage.DISCARD, "d1"),
        (Stage.ERROR, "e1"),
        (Stage.OUTGOING, "o1"),
    ]:
        make_task(data, stage, name)
    config = write_config(
        tmp_path,
        data,
        success_retention=0,
        discard_retention="1d",
        error_retention=0,
        window=window_around_now(),
    )
    due = ["error/e1", "success/s1", "success/s2"]
    with claimed_by_another_process(data.stage(Stage.SUCCESS) / "held"):
        before = visible(data)
        dry = clean(config, "--dry-run")
        assert sorted(listed(dry, "would remove")) == due
        assert all(" retention " in line for line in dry if line.startswith("would remove"))
        assert dry[-1].startswith("3 tasks")
        assert listed(dry, "skipped") == ["success/held"]
        assert visible(data) == before
        assert outbox_events(data, "task.cleaned") == []

        real = clean(config)
        assert sorted(listed(real, "removed")) == due
    assert visible(data) == ["outgoing/o1", "success/held", "discard/d1"]
    assert sorted(e.task_id or "" for e in outbox_events(data, "task.cleaned")) == [
        "e1",
        "s1",
        "s2",
    ]


def test_outside_the_window_only_ignore_window_applies_retention(
    data: DataFolder, tmp_path: Path
) -> None:
    """Out of the window nothing is due; --ignore-window applies retention now."""
    make_task(data, Stage.SUCCESS, "s1")
    config = write_config(tmp_path, data, success_retention=0, window=window_closed_now())
    closed = clean(config, "--dry-run")
    assert "closed" in closed[0] and listed(closed, "would remove") == []
    forced = clean(config, "--dry-run", "--ignore-window")
    assert listed(forced, "would remove") == ["success/s1"]
    assert visible(data) == ["success/s1"]
