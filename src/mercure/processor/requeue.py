"""Requeue a task that failed in processing, and free a queued task for deletion.

``mercure requeue TASK_ID`` calls :func:`requeue_processing` for processing failures (the
dispatcher has its own kind); ``mercure delete`` calls :func:`release_for_deletion`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import docker.errors
from requests.exceptions import RequestException

from mercure.core.claims import Claim
from mercure.core.config.models import ProcessingConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import ClaimError, PermanentError, TaskError, TransientError
from mercure.core.task import ERROR_FILE, move_task, read_task, write_task
from mercure.processor import workspace
from mercure.processor.runners.command import CommandRunner
from mercure.processor.runners.docker import DockerRunner

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


def release_for_deletion(task_dir: Path, config: ProcessingConfig) -> list[str]:
    """Before a claimed task in ``processing/`` is deleted: stop what a dead processor left.

    Holding the claim means no processor runs the task now; but one that was killed may have
    left its module running (a command module survives in its own session, a container keeps
    running) and a half-assembled result beside the task. Both go, as a restarted processor
    would do them. Returns notes for the operator (what could not be done now).
    """
    notes: list[str] = []
    record = workspace.read_job_record(task_dir / workspace.WORK_DIR)
    if record is not None:
        runner = record.get("runner")
        try:
            if runner == "command":
                CommandRunner().stop_orphans(task_dir.name, record)
            elif runner == "docker":
                instance = str(record.get("instance") or "")
                DockerRunner(config, instance).stop_orphans(task_dir.name, record)
        except (TransientError, docker.errors.DockerException, RequestException) as exc:
            notes.append(
                f"its module's container could not be removed now ({exc}); the processor "
                "removes it at its next start"
            )
    done = task_dir.with_name(workspace.DONE_PREFIX + task_dir.name)
    if done.exists():
        # The original is still here, so the assembly never finished: recovery would drop it.
        workspace.remove_tree(done)
    return notes
