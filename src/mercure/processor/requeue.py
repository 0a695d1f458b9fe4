"""Free a queued task for deletion: what only the processor knows how to stop.

``mercure delete`` passes :func:`release_for_deletion` to
:func:`mercure.core.operations.delete_task` (requeueing a processing failure is in
:mod:`mercure.core.requeue`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import docker.errors
from requests.exceptions import RequestException

from mercure.core.config.models import ProcessingConfig
from mercure.core.errors import TransientError
from mercure.processor import workspace
from mercure.processor.runners.command import CommandRunner
from mercure.processor.runners.docker import DockerRunner

log = logging.getLogger(__name__)


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
