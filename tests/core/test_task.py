"""task.json and moving tasks between stages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import DataFolderError, TaskError
from mercure.core.task import (
    Task,
    TaskDispatch,
    TaskInfo,
    TaskProcessing,
    TaskStudy,
    fail_task,
    module_document,
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


def test_missing_parts_are_written_as_empty_objects(data: DataFolder) -> None:
    """No study or dispatch: ``{}`` in task.json as mercure writes it, None in Python."""
    folder = data.stage(Stage.PROCESSING) / "t"
    folder.mkdir()
    write_task(folder, Task(id="t", info=TaskInfo(action="process", uid="1.2")))
    document = json.loads((folder / "task.json").read_text())
    assert document["study"] == {} and document["dispatch"] == {}
    task = read_task(folder)
    assert task.study is None and task.dispatch is None


def test_task_json_written_by_mercure_is_read(data: DataFolder) -> None:
    """mercure's shapes: process object, rule name, target name, Unix retry time, its times."""
    folder = data.stage(Stage.OUTGOING) / "m"
    folder.mkdir()
    document = {
        "id": "m",
        "info": {
            "action": "both",
            "uid": "1.2.3",
            "uid_type": "study",
            "triggered_rules": "study-rule",
            "applied_rule": "study-rule",
            "mrn": "",
            "acc": "",
            "mercure_version": "0.4.1",
            "mercure_appliance": "master",
            "mercure_server": "host",
        },
        "dispatch": {"target_name": "pacs", "retries": None, "next_retry_at": 1700000000.0},
        "process": {"module_name": "m", "settings": {}, "retain_input_images": "False"},
        "study": {
            "study_uid": "1.2.3",
            "complete_trigger": "timeout",
            "complete_required_series": "",
            "creation_time": "2024-05-06 07:08:09",
            "last_receive_time": "2024-05-06 07:09:09",
            "received_series": None,
            "received_series_uid": None,
            "complete_force": False,
        },
        "nomad_info": None,
    }
    (folder / "task.json").write_text(json.dumps(document))
    task = read_task(folder)
    assert task.info.triggered_rules == {"study-rule": True}
    assert task.dispatch is not None and task.dispatch.target_name == ["pacs"]
    assert task.dispatch.retries == 0
    assert task.dispatch.next_retry_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert [p.module_name for p in task.process] == ["m"]
    assert task.study is not None and task.study.received_series == []
    assert task.study.creation_time == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert task.info.mercure_server == "host"


def test_module_sees_mercure_types(data: DataFolder) -> None:
    """The module's view: mercure's fields only, text where mercure has text, its formats."""
    task = Task(
        id="t",
        info=TaskInfo(action="both", uid="1.2"),
        dispatch=TaskDispatch(target_name=["pacs"], next_retry_at=datetime(2024, 1, 1, tzinfo=UTC)),
        process=[TaskProcessing(module_name="m")],
        study=TaskStudy(study_uid="9", creation_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    )
    view = module_document(task, task.process[0], {"docker_tag": ""})
    assert set(view) == {"id", "info", "dispatch", "process", "study", "nomad_info"}
    assert view["info"]["mrn"] == "" and view["info"]["mercure_server"]
    assert view["dispatch"]["target_name"] == "pacs"
    assert view["dispatch"]["next_retry_at"] == 1704067200.0
    assert view["dispatch"]["series_uid"] == "1.2"
    assert view["process"]["module_config"] == {"docker_tag": ""}
    assert view["study"]["creation_time"] == "2024-01-02 03:04:05"
