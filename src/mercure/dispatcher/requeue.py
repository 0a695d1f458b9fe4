"""Requeue: move a task that failed in dispatch from ``error/`` back to ``outgoing/``.

Targets that ended in error get a fresh set of attempts; instances already confirmed by a
target stay confirmed (the progress journal travels with the task), so a requeued task sends
only what is missing. The previous ``error.json`` is kept as ``requeued-error-<time>.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mercure.core.claims import Claim
from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import ClaimError, TaskError
from mercure.core.task import ERROR_FILE, move_task, read_task, write_task
from mercure.dispatcher.engine import FAIL_STAGE


def requeue_task(data: DataFolder, task_id: str) -> Path:
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
        if task.info.fail_stage != FAIL_STAGE or task.dispatch is None:
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
