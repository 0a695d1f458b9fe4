"""Claims die with their owner: a SIGKILLed holder never blocks a task."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from mercure.core.claims import Claim
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.task import Task, TaskInfo, move_task, read_task, write_task

HOLDER = """
import sys, time
from mercure.core.claims import Claim
claim = Claim.take(sys.argv[1])
print("claimed", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def holder_process(task: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds a claim on ``task`` until killed."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(task)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "claimed\n"
            yield holder
        finally:
            holder.kill()


def make_task(data: DataFolder, stage: Stage, task_id: str = "t1") -> Path:
    """A minimal task folder with a task.json."""
    folder = data.stage(stage) / task_id
    folder.mkdir()
    write_task(folder, Task(id=task_id, info=TaskInfo(action="route", uid="1.2.3")))
    return folder


def test_claim_is_exclusive_between_processes(tmp_path: Path) -> None:
    """While another process holds a claim, nobody else can take it."""
    data = DataFolder(tmp_path)
    data.ensure()
    task = make_task(data, Stage.OUTGOING)
    with holder_process(task):
        assert Claim.try_take(task) is None
        assert Claim.is_claimed(task)


def test_killed_holder_does_not_block_the_task(tmp_path: Path) -> None:
    """A holder killed with SIGKILL mid-work: a new process claims and finishes the task."""
    data = DataFolder(tmp_path)
    data.ensure()
    task = make_task(data, Stage.OUTGOING)
    with holder_process(task) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert not Claim.is_claimed(task)
    with Claim.take(task) as claim:
        done = move_task(task, data, Stage.SUCCESS)
        claim.moved_to(done)
    assert read_task(done).id == "t1"
    assert data.entries(Stage.OUTGOING) == []


def test_claim_on_a_moved_task_is_refused(tmp_path: Path) -> None:
    """A claim is only good while the folder is still where the claimer looked."""
    data = DataFolder(tmp_path)
    data.ensure()
    task = make_task(data, Stage.OUTGOING)
    move_task(task, data, Stage.SUCCESS)
    assert Claim.try_take(task) is None


def test_claim_follows_the_folder_when_moved(tmp_path: Path) -> None:
    """The holder may move the task; the next stage cannot take it until released."""
    data = DataFolder(tmp_path)
    data.ensure()
    task = make_task(data, Stage.PROCESSING)
    claim = Claim.take(task)
    moved = move_task(task, data, Stage.OUTGOING)
    assert Claim.try_take(moved) is None
    claim.release()
    second = Claim.try_take(moved)
    assert second is not None
    second.release()
