"""Sending a task again: a failed one back where it failed, a finished one as a new task.

The mechanics behind ``mercure requeue`` and the web interface's Requeue button
(:mod:`mercure.core.operations` reports them):

- :func:`requeue_failed_processing` moves a task that failed in processing from ``error/``
  back to ``processing/`` (its original input was preserved), failure cleared.
- :func:`requeue_failed_dispatch` moves a task that failed in dispatch from ``error/`` back to
  ``outgoing/``. Targets that ended in error get a fresh set of attempts; instances already
  confirmed by a target stay confirmed (the progress journal travels with the task), so a
  requeued task sends only what is missing. The previous ``error.json`` is kept as
  ``requeued-error-<time>.json``.
- :func:`resend_task` sends a finished task (``success/``, ``discard/``) again: a new task with
  a new id and its own copies of the files, built hidden in ``outgoing/`` and renamed into
  place; the old task is kept.

Each holds the task's claim while it works, so a task a service is working on is refused
(:class:`ClaimError`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from mercure.core.atomic import fsync_dir
from mercure.core.claims import Claim
from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder, Stage, is_visible
from mercure.core.errors import ClaimError, PermanentError, TaskError
from mercure.core.task import (
    ERROR_FILE,
    Task,
    move_task,
    new_task_id,
    read_task,
    write_task,
)

log = logging.getLogger(__name__)

PROCESSING_FAIL_STAGE = "processing"
"""``fail_stage`` of a task the processor failed."""
DISPATCH_FAIL_STAGE = "dispatch"
"""``fail_stage`` of a task the dispatcher failed."""
RESEND_PREFIX = ".resend-"
"""A new task being built in ``outgoing/`` (hidden until complete, claimed while built)."""


def is_processing_failure(task_dir: Path) -> bool:
    """Whether a task in ``error/`` failed in the processing stage (by its ``error.json``)."""
    try:
        record = json.loads((task_dir / ERROR_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(record.get("fail_stage") == PROCESSING_FAIL_STAGE)


def requeue_failed_processing(data: DataFolder, task_id: str) -> Path:
    """Move ``error/<task_id>`` back to ``processing/`` with its failure cleared; the new path.

    Raises :class:`TaskError` if there is no such failed task or it did not fail in
    processing, :class:`ClaimError` if another process is working on it.
    """
    task_dir = data.stage(Stage.ERROR) / task_id
    if not task_dir.is_dir():
        raise TaskError(f"no task {task_id} in error/")
    if not is_processing_failure(task_dir):
        raise TaskError(f"task {task_id} did not fail in processing; it cannot be reprocessed")
    claim = Claim.try_take(task_dir)
    if claim is None:
        raise ClaimError(f"task {task_id} is being worked on by another process")
    with claim:
        task = read_task(task_dir)
        if not task.process:
            raise PermanentError(f"task {task_id} names no processing module")
        task.info.fail_stage = None
        task.info.reason = None
        write_task(task_dir, task)
        (task_dir / ERROR_FILE).unlink()
        destination = move_task(task_dir, data, Stage.PROCESSING)
    log.info("task %s requeued for processing", task_id)
    return destination


def requeue_failed_dispatch(data: DataFolder, task_id: str) -> Path:
    """Move the failed task ``task_id`` back to ``outgoing/``; returns its new folder.

    Raises :class:`TaskError` when there is no such task in ``error/`` or it did not fail in
    dispatch, :class:`ClaimError` when another process holds it.
    """
    folder = data.stage(Stage.ERROR) / task_id
    if not folder.is_dir():
        raise TaskError(f"no task {task_id} in {data.stage(Stage.ERROR)}")
    claim = Claim.try_take(folder)
    if claim is None:
        raise ClaimError(f"task {task_id} is being worked on by another process")
    with claim:
        task = read_task(folder)
        if task.info.fail_stage != DISPATCH_FAIL_STAGE or task.dispatch is None:
            stage = task.info.fail_stage or "an unknown stage"
            raise TaskError(f"task {task_id} failed in {stage}, not in dispatch")
        for status in task.dispatch.status.values():
            if status.state == "error":
                status.state = "waiting"
                status.retries = 0
                status.next_retry_at = None
                status.reason = None
        task.dispatch.retries = 0
        task.dispatch.next_retry_at = None
        task.info.fail_stage = None
        task.info.reason = None
        write_task(folder, task)
        if (folder / ERROR_FILE).exists():
            stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
            os.rename(folder / ERROR_FILE, folder / f"requeued-error-{stamp}.json")
        destination = move_task(folder, data, Stage.OUTGOING)
        claim.moved_to(destination)
    return destination


def dicom_files(task_dir: Path) -> list[Path]:
    """The DICOM files of a task, in name order (temporary dot-names excluded)."""
    return sorted(
        p for p in task_dir.iterdir() if p.suffix == ".dcm" and is_visible(p.name) and p.is_file()
    )


def resend_task(
    data: DataFolder, source: Path, targets: list[str], *, user: str
) -> tuple[Task, Path]:
    """Build a new task in ``outgoing/`` that sends the finished task in ``source`` again.

    The new task has a new id, fresh per-target status and its own copies of the DICOM files:
    not hard links, because the finished task's files may be links shared with a task that a
    module is processing (fan-out), and a module that rewrites its input in place must not
    change what is re-sent. The old task stays as it is; it is claimed while its files are
    copied so that the cleaner cannot remove it meanwhile. ``targets`` replace the old task's
    targets when given. Returns the new task and its folder.

    Raises :class:`ClaimError` when another process holds the old task, :class:`TaskError`
    when it has nothing to send or no target to send it to.
    """
    stage = source.parent.name
    claim = Claim.try_take(source)
    if claim is None:
        raise ClaimError(f"task {source.name} is being worked on by another process")
    with claim:
        old = read_task(source)
        chosen = targets or (old.dispatch.target_name if old.dispatch else [])
        if not chosen:
            raise TaskError(
                f"task {old.id} in {stage}/ has no targets: name them with --target NAME"
            )
        files = dicom_files(source)
        if not files:
            raise TaskError(f"task {old.id} in {stage}/ has no DICOM files to send")
        document = old.model_dump(mode="json", include={"info", "process", "study", "nomatch"})
        document["info"].update(action="route", fail_stage=None, reason=None)
        document.update(
            id=new_task_id(),
            dispatch={"target_name": list(chosen)},
            resent_from={
                "task_id": old.id,
                "stage": stage,
                "time": utcnow().isoformat(),
                "user": user,
            },
        )
        new = Task.model_validate(document)
        sweep_unfinished_resends(data)
        return new, _build(data, new, files)


def _build(data: DataFolder, task: Task, files: list[Path]) -> Path:
    outgoing = data.stage(Stage.OUTGOING)
    staging = outgoing / f"{RESEND_PREFIX}{task.id}"
    destination = outgoing / task.id
    staging.mkdir()
    # Claimed while it is built: a concurrent sweep must not take it for a crash's leftover.
    with Claim.take(staging):
        try:
            for path in files:
                _copy_durably(path, staging / path.name)
            write_task(staging, task)
            fsync_dir(staging)
            if destination.exists():
                raise TaskError(f"cannot create task {task.id}: it exists in outgoing/")
            os.rename(staging, destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(outgoing)
    return destination


def _copy_durably(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with open(target, "rb") as handle:
        os.fsync(handle.fileno())


def sweep_unfinished_resends(data: DataFolder) -> list[Path]:
    """Remove new tasks a killed requeue left half built; those removed.

    One still claimed is being built by a running requeue and is left alone.
    """
    outgoing = data.stage(Stage.OUTGOING)
    removed = []
    for entry in sorted(outgoing.glob(f"{RESEND_PREFIX}*")):
        claim = Claim.try_take(entry)
        if claim is None:
            continue
        with claim:
            shutil.rmtree(entry, ignore_errors=True)
        log.info("removed %s, a re-sent task whose building was interrupted", entry.name)
        removed.append(entry)
    return removed
