"""`mercure requeue`: failed tasks go back to the stage they failed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercure.cli import main
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import read_segment
from mercure.core.task import (
    TargetStatus,
    Task,
    TaskDispatch,
    TaskInfo,
    TaskProcessing,
    fail_task,
    write_task,
)


def failed_task(data: DataFolder, task_id: str, stage: str) -> None:
    """A task in error/ that failed in ``stage``."""
    folder = data.stage(Stage.OUTGOING) / task_id
    folder.mkdir()
    task = Task(
        id=task_id,
        info=TaskInfo(action="both", uid="1.2.3"),
        dispatch=TaskDispatch(target_name=["pacs"], status={"pacs": TargetStatus(state="error")}),
        process=[TaskProcessing(module_name="anon")],
    )
    write_task(folder, task)
    fail_task(folder, data, stage=stage, reason="test failure", service="test")


def test_requeue_sends_each_task_back_where_it_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dispatch failure returns to outgoing/, a processing failure to processing/."""
    main(["init", str(tmp_path)])
    data = DataFolder(tmp_path / "data")
    failed_task(data, "t-dispatch", "dispatch")
    failed_task(data, "t-process", "processing")
    config = str(tmp_path / "mercure.yaml")
    assert main(["requeue", "t-dispatch", "t-process", "--config", config]) == 0
    assert (data.stage(Stage.OUTGOING) / "t-dispatch").is_dir()
    assert (data.stage(Stage.PROCESSING) / "t-process").is_dir()
    assert "t-dispatch: back in outgoing/" in capsys.readouterr().out
    requeued = [
        event
        for outbox in data.outbox_dir.iterdir()
        for segment in sorted(outbox.glob("*.jsonl"))
        for event in read_segment(segment)
        if event.kind == "task.requeued"
    ]
    assert {(e.task_id, e.data["stage"]) for e in requeued} == {
        ("t-dispatch", "outgoing"),
        ("t-process", "processing"),
    }


def test_requeue_explains_what_it_cannot_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown tasks and receive failures are refused with a reason, and exit 1."""
    main(["init", str(tmp_path)])
    data = DataFolder(tmp_path / "data")
    failed_task(data, "t-receive", "receive")
    config = str(tmp_path / "mercure.yaml")
    assert main(["requeue", "t-receive", "nope", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "t-receive: not requeued: task t-receive failed in receive" in out
    assert "nope: not requeued: no task nope" in out
    assert (data.stage(Stage.ERROR) / "t-receive").is_dir()
