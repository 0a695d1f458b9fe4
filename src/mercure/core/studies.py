"""Completing a study being collected in ``studies/<StudyInstanceUID>#<rule>/``.

One implementation for the router (a study whose condition is met, or whose force time
passed), ``mercure study complete`` and the web interface's Complete / Discard buttons:
:func:`complete_study_folder` moves the study on under its claim, :func:`report_study_moved`
tells the bookkeeper. When a study is complete is the router's business
(:mod:`mercure.router.studies`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mercure.core.atomic import fsync_dir
from mercure.core.claims import Claim
from mercure.core.datafolder import DataFolder, Stage, is_visible
from mercure.core.errors import TaskError
from mercure.core.events import EventClient
from mercure.core.task import STAGE_OF_ACTION, Task, read_task, write_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompletedStudy:
    """A study task moved on from ``studies/``."""

    task: Task
    stage: Stage
    path: Path


def study_names(data: DataFolder) -> list[str]:
    """The study folders now collecting (``<StudyInstanceUID>#<rule>``), in name order."""
    try:
        return sorted(name for name in os.listdir(data.stage(Stage.STUDIES)) if is_visible(name))
    except FileNotFoundError:
        return []


def complete_study_folder(
    data: DataFolder, name: str, *, forced: bool = False, discard: bool = False, reason: str = ""
) -> CompletedStudy | None:
    """Move study ``name`` on to the stage of its action (``discard/`` if ``discard``).

    None if another process holds the study or it is gone. Forcing is recorded in task.json
    before the move, so a crash in between completes it the same way later.
    """
    root = data.stage(Stage.STUDIES)
    target = root / name
    claim = Claim.try_take(target)
    if claim is None:
        return None
    with claim:
        task = read_task(target)
        if task.study is not None and forced:
            task.study.complete_force = True
        if discard:
            task.info.action = "discard"
            task.info.reason = reason or "study discarded"
        if forced or discard:
            write_task(target, task)
        stage = STAGE_OF_ACTION[task.info.action]
        destination = data.stage(stage) / task.id
        if destination.exists():
            raise TaskError(f"cannot move study {name} to {stage}: {task.id} is already there")
        os.rename(target, destination)
        fsync_dir(root)
        fsync_dir(destination.parent)
    log.info("study %s complete: task %s to %s", name, task.id, stage)
    return CompletedStudy(task, stage, destination)


def report_study_moved(
    events: EventClient,
    task: Task,
    stage: Stage,
    path: Path,
    reason: str,
    *,
    user: str | None = None,
) -> None:
    """A collected study is complete and moved on (or discarded); ``user`` if a person did it."""
    kind = "task.discarded" if stage is Stage.DISCARD else "task.update"
    by = f" by {user}" if user else ""
    extra: dict[str, Any] = {"user": user} if user else {}
    events.emit(
        kind,
        task_id=task.id,
        study_uid=task.info.uid,
        message=f"study complete ({reason}){by}: moved to {stage.value}",
        task=task.model_dump(mode="json"),
        stage=stage.value,
        reason=reason,
        folder=path.name,
        **extra,
    )
