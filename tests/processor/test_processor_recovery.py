"""Crash safety and requeue: a killed processor's module is stopped and the task runs again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processor_harness import Processor, command_module, module_names

from mercure.core.claims import Claim
from mercure.core.datafolder import Stage
from mercure.core.errors import TaskError
from mercure.core.requeue import requeue_failed_processing as requeue_processing
from mercure.core.task import read_task
from mercure.testing.series import GeneratedSeries
from mercure.testing.wait import wait_until


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_killed_processor_orphan_is_stopped_and_task_reruns(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """kill -9 mid-job: on restart the orphaned module is killed and the task runs again."""
    processor.config["modules"]["slow"] = command_module("behave.py", timeout=120)
    processor.start()
    pid_file = tmp_path / "pid"
    settings = {"behaviour": "hang", "once": True, "pid_file": str(pid_file)}
    task_id = processor.add_task(tiny_series, ["slow"], settings=settings)
    # The module creates the file, then writes its PID: wait for the whole number.
    orphan = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 20))
    processor.kill()
    assert _alive(orphan)  # its own process group: the module outlives the processor
    processor.start()
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    assert not _alive(orphan)
    assert sorted(p.name for p in folder.glob("*.dcm")) == module_names(tiny_series)
    assert processor.events("task.process.recovered")[0]["task_id"] == task_id


def test_interrupted_hand_over_is_completed_at_start(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """A finished task assembled but not yet moved when the processor died is delivered."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    task_id = processor.add_task(tiny_series, ["copy"])
    stage = processor.data.stage(Stage.PROCESSING)
    # The state hand_over leaves between its two renames.
    os.rename(stage / task_id, stage / f".done-{task_id}")
    (stage / f".trash-{task_id}").mkdir()
    processor.start()
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    assert len(list(folder.glob("*.dcm"))) == len(tiny_series)
    wait_until(lambda: not list(stage.iterdir()))


def test_requeued_failure_runs_again_from_its_input(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """A task failed in processing, requeued after the module was fixed, then succeeds."""
    flag = tmp_path / "fixed"
    processor.config["modules"]["flaky"] = command_module("behave.py")
    processor.start()
    settings = {"behaviour": "fail", "once": True, "flag": str(flag)}
    task_id = processor.add_task(tiny_series, ["flaky"], settings=settings)
    failed = processor.wait_for(task_id, Stage.ERROR)
    assert json.loads((failed / "error.json").read_text())["fail_stage"] == "processing"
    # The processor moves a failed task while still claiming it, and lets go just after.
    wait_until(lambda: not Claim.is_claimed(failed))
    requeue_processing(processor.data, task_id)
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    assert read_task(folder).info.reason is None
    assert len(list(folder.glob("*.dcm"))) == len(tiny_series)


def test_requeue_refuses_unknown_task(processor: Processor) -> None:
    """Requeueing a task that is not in error/ says so."""
    with pytest.raises(TaskError, match="no task nope in error/"):
        requeue_processing(processor.data, "nope")


KILLED_AFTER_HAND_OVER = """
import os, signal, sys
import mercure.processor.job as job
import mercure.processor.workspace as workspace

original = workspace.hand_over

def hand_over_then_die(task_dir, done_dir, data):
    final = original(task_dir, done_dir, data)
    os.kill(os.getpid(), signal.SIGKILL)  # killed the moment the task is in its next stage
    return final

workspace.hand_over = hand_over_then_die
from mercure.cli.main import main
sys.exit(main(["processor", "--config", sys.argv[1]]))
"""


def test_task_handed_on_then_killed_still_reports_its_processing(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """A processor killed right after moving a processed task to success/ has already told the
    bookkeeper it was processed and completed: a restarted processor no longer sees the task."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    task_id = processor.add_task(tiny_series, ["copy"])
    processor.write_config()
    command = [sys.executable, "-c", KILLED_AFTER_HAND_OVER, str(processor.config_path)]
    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as killed:
        try:
            assert killed.wait(60) == -signal.SIGKILL
        finally:
            killed.kill()
    assert processor.where(task_id) == Stage.SUCCESS

    processor.start()  # finds nothing of this task to recover
    wait_until(lambda: len(processor.events("service.boot")) >= 2, 20)
    kinds = [e["kind"] for e in processor.events() if e.get("task_id") == task_id]
    assert "task.process.complete" in kinds and "task.completed" in kinds, kinds
