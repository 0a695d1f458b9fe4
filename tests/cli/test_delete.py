"""`mercure delete TASK_ID`: remove a task that no process is working on, and say so."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from requeue_site import Installation

from mercure.cleaner.cleaner import Cleaner
from mercure.cli import delete as delete_module
from mercure.core.claims import Claim
from mercure.core.config import load_config
from mercure.core.datafolder import Stage
from mercure.core.delivery import command_events
from mercure.processor.runners.command import process_start_time
from mercure.processor.workspace import DONE_PREFIX, JOB_FILE, WORK_DIR
from mercure.testing.wait import wait_until


@pytest.fixture
def site(tmp_path: Path) -> Installation:
    """An initialised installation with two folder targets."""
    return Installation(tmp_path)


@pytest.mark.parametrize("stage", [Stage.OUTGOING, Stage.PROCESSING, Stage.ERROR, Stage.SUCCESS])
def test_delete_removes_the_task_and_reports_who(
    site: Installation, stage: Stage, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder is gone; task.deleted (state `deleted`) says from where and by whom."""
    site.add(stage, "t-1")
    assert site.cli("delete", "t-1", "--yes", "--reason", "sent by mistake") == 0
    assert f"t-1: deleted from {stage.value}/" in capsys.readouterr().out
    assert site.tasks_in(stage) == []
    assert not any(site.data.stage(s).joinpath("t-1").exists() for s in Stage)
    [event] = site.events("task.deleted")
    assert event.task_id == "t-1"
    assert event.series_uid == site.series.series_uid
    assert event.data["stage"] == "deleted"
    assert event.data["from_stage"] == stage.value
    assert event.data["reason"] == "sent by mistake"
    assert "(command line)" in event.data["user"]
    assert event.data["user"] in event.message
    assert "Doe" not in event.message


def test_a_claimed_task_is_not_deleted(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a service holds the task (a dispatcher sending it), delete refuses and says why."""
    folder = site.add(Stage.OUTGOING, "t-busy")
    with Claim.take(folder):
        assert site.cli("delete", "t-busy", "--yes") == 1
    out = capsys.readouterr().out
    assert "t-busy: not deleted: task t-busy in outgoing/ is being worked on" in out
    assert "mercure pause outgoing" in out
    assert folder.is_dir()
    assert site.events("task.deleted") == []


def test_delete_asks_unless_told_yes(
    site: Installation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --yes: no terminal means no deletion; at a terminal, only 'y' deletes."""
    site.add(Stage.OUTGOING, "t-1")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert site.cli("delete", "t-1") == 1
    assert "add --yes" in capsys.readouterr().err
    assert site.tasks_in(Stage.OUTGOING) == ["t-1"]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert site.cli("delete", "t-1") == 1
    assert site.tasks_in(Stage.OUTGOING) == ["t-1"]
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert site.cli("delete", "t-1") == 0
    assert site.tasks_in(Stage.OUTGOING) == []


def test_delete_refuses_ids_that_are_paths(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """`../x`, hidden names and unknown ids delete nothing."""
    site.add(Stage.OUTGOING, "t-1")
    assert site.cli("delete", "../outgoing/t-1", ".deleting-t-1", "t-2", "--yes") == 1
    out = capsys.readouterr().out
    assert "../outgoing/t-1: not deleted: not a task id" in out
    assert ".deleting-t-1: not deleted: not a task id" in out
    assert "t-2: not deleted: no task t-2 in processing/, outgoing/" in out
    assert site.tasks_in(Stage.OUTGOING) == ["t-1"]


def test_a_damaged_task_can_still_be_deleted(site: Installation) -> None:
    """An unreadable task.json is no reason to keep a task the operator wants gone."""
    folder = site.add(Stage.ERROR, "t-broken")
    (folder / "task.json").write_text("{ not json")
    assert site.cli("delete", "t-broken", "--yes") == 0
    assert not folder.exists()
    [event] = site.events("task.deleted")
    assert event.data["task"] is None


def test_deleting_a_processing_task_stops_the_module_a_dead_processor_left(
    site: Installation,
) -> None:
    """A command module still running for the task (its processor was killed) is stopped."""
    folder = site.add(Stage.PROCESSING, "t-1", action="both")
    work = folder / WORK_DIR
    work.mkdir()
    module = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        record = {"runner": "command", "pid": module.pid, "start": process_start_time(module.pid)}
        (work / JOB_FILE).write_text(json.dumps(record))
        # What a processor killed while assembling the result leaves beside the task.
        done = site.data.stage(Stage.PROCESSING) / f"{DONE_PREFIX}t-1"
        done.mkdir()
        assert site.cli("delete", "t-1", "--yes") == 0
        assert module.wait(timeout=30) == -9
        assert not folder.exists()
        assert not done.exists()
    finally:
        if module.poll() is None:
            module.kill()
            module.wait()


def test_an_interrupted_deletion_is_finished_by_the_cleaner(site: Installation) -> None:
    """If removing the files fails midway, the task is already out of sight and the cleaner
    finishes the removal; the deletion is reported either way."""
    site.add(Stage.OUTGOING, "t-1")
    config = load_config(site.config).config

    def fail_midway(path: Path) -> None:
        next(path.glob("*.dcm")).unlink()
        raise OSError("disk went away")

    with command_events(config, "cli") as events:
        result = delete_module.delete_task(
            site.data, "t-1", events, user="test", delete_tree=fail_midway
        )
    assert "the cleaner finishes removing" in result
    assert site.tasks_in(Stage.OUTGOING) == []
    leftover = site.data.stage(Stage.DISCARD) / ".deleting-t-1"
    assert leftover.is_dir()
    assert [e.task_id for e in site.events("task.deleted")] == ["t-1"]
    Cleaner(site.data, None).finish_leftovers()
    wait_until(lambda: not leftover.exists(), timeout=5)
