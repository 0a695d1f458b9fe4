"""The cleaner as a service in the frame: ``python -m mercure cleaner --config ...``."""

from __future__ import annotations

from pathlib import Path

from cleaner_helpers import (
    make_task,
    outbox_events,
    running_cleaner,
    window_around_now,
    write_config,
)

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.heartbeat import read_heartbeats


def test_cleaner_service_removes_due_tasks_and_nothing_else(
    data: DataFolder, tmp_path: Path
) -> None:
    """The service in the frame removes due tasks in its window and reports each one."""
    make_task(data, Stage.SUCCESS, "done")
    make_task(data, Stage.DISCARD, "discarded")
    make_task(data, Stage.OUTGOING, "sending")
    config = write_config(
        tmp_path,
        data,
        success_retention=0,
        discard_retention="1d",
        window=window_around_now(),
    )
    with running_cleaner(config, data) as cleaner:
        cleaner.wait_for(lambda: not data.entries(Stage.SUCCESS))
        cleaner.wait_for(lambda: any(b.service == "cleaner" for b in read_heartbeats(data.run_dir)))
    assert [path.name for path in data.entries(Stage.DISCARD)] == ["discarded"]
    assert [path.name for path in data.entries(Stage.OUTGOING)] == ["sending"]
    [event] = outbox_events(data, "task.cleaned")
    assert (event.task_id, event.data["reason"], event.data["from_stage"]) == (
        "done",
        "retention",
        "success",
    )
