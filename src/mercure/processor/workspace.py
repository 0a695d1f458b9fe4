"""The processor's folders inside and beside a task, and how a finished task leaves them.

::

    processing/<task_id>/            the task as the router left it: task.json + input files
      .processor/                    work area (hidden): never part of the task's content
        job.json                     what is running now (runner, pid + start time, container)
        1-in/ 1-out/ 2-in/ ...       per module step; inputs are hard links, never the originals
        1-<module>.log ...           captured stdout and stderr
    processing/.done-<task_id>/      the finished task being assembled
    processing/.trash-<task_id>/     the original folder, after the finished one was assembled

The original input is never modified until the finished task has been assembled completely, so
a processor killed at any point leaves either the original task (which runs again) or a finished
one that :func:`recover_stage` completes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mercure.core.atomic import atomic_write_json, fsync_dir
from mercure.core.claims import Claim
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.task import ERROR_FILE, TASK_FILE, read_task

log = logging.getLogger(__name__)

WORK_DIR = ".processor"
JOB_FILE = "job.json"
LOGS_DIR = "logs"
RESULT_FILE = "result.json"
DONE_PREFIX = ".done-"
TRASH_PREFIX = ".trash-"
_NOT_INPUT = {TASK_FILE, ERROR_FILE, RESULT_FILE}


def input_files(task_dir: Path) -> list[Path]:
    """The task's data files: regular files at its top level except mercure's own documents."""
    return sorted(
        entry
        for entry in task_dir.iterdir()
        if entry.is_file() and entry.name not in _NOT_INPUT and not entry.name.startswith(".")
    )


def link_files(files: list[Path], folder: Path) -> None:
    """Hard-link ``files`` into ``folder`` (same filesystem: no copy); existing names are kept."""
    for source in files:
        target = folder / source.name
        if not target.exists():
            os.link(source, target)


def write_job_record(work_dir: Path, record: dict[str, Any]) -> None:
    """Record what is running for this task, so a restarted processor can stop it."""
    atomic_write_json(work_dir / JOB_FILE, record)


def read_job_record(work_dir: Path) -> dict[str, Any] | None:
    """The job record a previous processor left, if any."""
    try:
        record: dict[str, Any] = json.loads((work_dir / JOB_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return record


def remove_tree(path: Path) -> None:
    """Delete a folder; read-only modes a module left behind do not stop it."""
    shutil.rmtree(path, ignore_errors=True)


def destination_of(task_dir: Path) -> Stage:
    """Where a processed task goes: ``outgoing/`` when it has targets, else ``success/``."""
    task = read_task(task_dir)
    return Stage.OUTGOING if task.dispatch and task.dispatch.target_name else Stage.SUCCESS


def hand_over(task_dir: Path, done_dir: Path, data: DataFolder) -> Path:
    """Replace the original task by the assembled finished one, in its next stage.

    Order matters for crash safety: the original is renamed aside first, then the finished
    folder is renamed into its stage, then the original is deleted.
    """
    stage = destination_of(done_dir)
    trash = task_dir.with_name(TRASH_PREFIX + task_dir.name)
    os.rename(task_dir, trash)
    final = data.stage(stage) / task_dir.name
    os.rename(done_dir, final)
    fsync_dir(task_dir.parent)
    fsync_dir(final.parent)
    remove_tree(trash)
    return final


def recover_stage(data: DataFolder) -> list[str]:
    """Finish or undo hand-overs a killed processor left half done; the task ids completed."""
    folder = data.stage(Stage.PROCESSING)
    completed = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(DONE_PREFIX):
            task_id = entry.name[len(DONE_PREFIX) :]
            original = folder / task_id
            trash = folder / (TRASH_PREFIX + task_id)
            if original.exists():
                # Assembly did not finish: the original runs again (unless someone runs it now).
                with _claimed(original) as ours:
                    if ours:
                        remove_tree(entry)
            elif trash.exists():
                with _claimed(trash) as ours:
                    if ours:
                        os.rename(entry, data.stage(destination_of(entry)) / task_id)
                        remove_tree(trash)
                        completed.append(task_id)
        elif entry.name.startswith(TRASH_PREFIX):
            task_id = entry.name[len(TRASH_PREFIX) :]
            if not (folder / (DONE_PREFIX + task_id)).exists():
                with _claimed(entry) as ours:
                    if ours:
                        remove_tree(entry)
    return completed


@contextlib.contextmanager
def _claimed(folder: Path) -> Iterator[bool]:
    """Hold a claim on ``folder`` for the block if nobody else holds one; yields whether."""
    claim = Claim.try_take(folder)
    try:
        yield claim is not None
    finally:
        if claim is not None:
            claim.release()
