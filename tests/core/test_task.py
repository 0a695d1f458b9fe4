"""task.json and moving tasks between stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import DataFolderError, TaskError
from mercure.core.task import (
    Task,
    TaskDispatch,
    TaskInfo,
    fail_task,
    move_task,
    read_task,
    write_task,
)


@pytest.fixture
def data(tmp_path: Path) -> DataFolder:
    """A data folder with every stage."""
    folder = DataFolder(tmp_path / "data")
    folder.ensure()
    return folder


def test_task_round_trips_and_keeps_unknown_fields(data: DataFolder) -> None:
    """Fields a module added survive a read and a write."""
    folder = data.stage(Stage.OUTGOING) / "t1"
    folder.mkdir()
    document = {
        "id": "t1",
        "info": {"action": "route", "uid": "1.2", "uid_type": "series", "vendor_note": "x"},
        "dispatch": {"target_name": ["pacs"]},
        "process": {"module_name": "anon", "settings": {"a": 1}},
        "custom": {"k": 1},
    }
    (folder / "task.json").write_text(json.dumps(document))
    task = read_task(folder)
    assert task.process[0].module_name == "anon"
    write_task(folder, task)
    again = json.loads((folder / "task.json").read_text())
    assert again["custom"] == {"k": 1}
    assert again["info"]["vendor_note"] == "x"
    assert again["schema_version"] == 1


def test_broken_task_json_names_the_problem(data: DataFolder) -> None:
    """A task.json that is not JSON, or lacks a field, gives a TaskError with the path."""
    folder = data.stage(Stage.OUTGOING) / "t2"
    folder.mkdir()
    (folder / "task.json").write_text("{not json")
    with pytest.raises(TaskError, match="not valid JSON at line 1"):
        read_task(folder)
    (folder / "task.json").write_text('{"id": "t2"}')
    with pytest.raises(TaskError, match="info"):
        read_task(folder)


def test_move_refuses_to_overwrite(data: DataFolder) -> None:
    """Moving onto an existing task of the same name fails and moves nothing."""
    for stage in (Stage.OUTGOING, Stage.SUCCESS):
        (data.stage(stage) / "t3").mkdir()
    with pytest.raises(TaskError, match="already exists"):
        move_task(data.stage(Stage.OUTGOING) / "t3", data, Stage.SUCCESS)
    assert (data.stage(Stage.OUTGOING) / "t3").is_dir()


def test_failed_task_records_stage_and_reason(data: DataFolder) -> None:
    """fail_task writes error.json and task.json's fail_stage, then moves to error/."""
    folder = data.stage(Stage.OUTGOING) / "t4"
    folder.mkdir()
    write_task(
        folder,
        Task(id="t4", info=TaskInfo(action="route", uid="1"), dispatch=TaskDispatch()),
    )
    moved = fail_task(
        folder, data, stage="dispatch", reason="pacs refused 3 instances", service="dispatcher"
    )
    assert moved.parent == data.stage(Stage.ERROR)
    assert read_task(moved).info.fail_stage == "dispatch"
    assert json.loads((moved / "error.json").read_text())["reason"] == "pacs refused 3 instances"


def test_pause_switch_survives_as_a_file(data: DataFolder) -> None:
    """Pausing a queue is visible to every process until resumed."""
    data.pause(Stage.OUTGOING, "maintenance")
    assert DataFolder(data.root).is_paused(Stage.OUTGOING)
    data.resume(Stage.OUTGOING)
    assert not data.is_paused(Stage.OUTGOING)
    with pytest.raises(ValueError, match="cannot be paused"):
        data.pause(Stage.SUCCESS)


def test_queue_depths_ignore_temporary_names(data: DataFolder) -> None:
    """Dot-names are in-progress writes, not queue entries."""
    (data.stage(Stage.INCOMING) / "1.2.3").mkdir()
    (data.stage(Stage.INCOMING) / ".tmp-x").mkdir()
    assert data.queue_depths()[Stage.INCOMING] == 1


def test_stage_on_another_filesystem_is_refused(tmp_path: Path) -> None:
    """A stage folder mounted elsewhere breaks atomic hand-over and is refused at start-up."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a different filesystem than the temp folder")
    data = DataFolder(tmp_path / "data")
    data.root.mkdir()
    elsewhere = shm / f"mercure-test-{tmp_path.name}"
    elsewhere.mkdir()
    try:
        (data.root / "outgoing").symlink_to(elsewhere)
        with pytest.raises(DataFolderError, match="another filesystem"):
            data.ensure()
    finally:
        elsewhere.rmdir()
