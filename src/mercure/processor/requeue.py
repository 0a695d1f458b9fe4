"""Requeue a task that failed in processing: it runs again from its preserved input.

``mercure requeue TASK_ID`` calls it for processing failures (the dispatcher has its own kind).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mercure.core.claims import Claim
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import ClaimError, PermanentError, TaskError
from mercure.core.task import ERROR_FILE, move_task, read_task, write_task

log = logging.getLogger(__name__)


def is_processing_failure(task_dir: Path) -> bool:
    """Whether a task in ``error/`` failed in the processing stage."""
    try:
        record = json.loads((task_dir / ERROR_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(record.get("fail_stage") == "processing")


def requeue_processing(data: DataFolder, task_id: str) -> Path:
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
    try:
        task = read_task(task_dir)
        if not task.process:
            raise PermanentError(f"task {task_id} names no processing module")
        task.info.fail_stage = None
        task.info.reason = None
        write_task(task_dir, task)
        (task_dir / ERROR_FILE).unlink()
        destination = move_task(task_dir, data, Stage.PROCESSING)
    finally:
        claim.release()
    log.info("task %s requeued for processing", task_id)
    return destination
