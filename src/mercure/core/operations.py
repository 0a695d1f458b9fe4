"""What an operator does to tasks and queues: one implementation for the CLI and the web.

``mercure requeue / delete / pause / resume / study complete`` and the web interface's
Queue page call these functions and nothing else, so a task is requeued, discarded or deleted
the same way whoever asks. Each takes the user who acts (``alice (command line)``,
``bob (web interface)``), does its work under the task's claim (a task a live service holds
is refused with :class:`ClaimError` and a hint), reports an event naming the user, and
returns one line saying what happened. Errors::

    TaskError    no such task, a task in the wrong stage for this, a damaged task.json
    ClaimError   a service (or another operator) is working on the task right now

======================  =================================================================
operation               effect (event)
======================  =================================================================
:func:`requeue`         ``error/``: back to the stage it failed in, same task
                        (``task.requeued``); ``success/`` or ``discard/``: re-sent as a
                        new task in ``outgoing/`` (``task.created`` + ``task.resent``)
:func:`discard_task`    a task in ``error/``, or queued in ``processing/`` /
                        ``outgoing/`` and not being worked on, moves to ``discard/`` with
                        the reason (``task.discarded``)
:func:`delete_task`     the task's folder is removed (``task.deleted``)
:func:`complete_study`  a study being collected moves on now, or to ``discard/``
                        (``task.update`` / ``task.discarded``)
:func:`pause_stage`     nothing new is taken from ``processing/`` or ``outgoing/``
                        (``queue.paused``)
:func:`resume_stage`    work is taken from the stage again (``queue.resumed``)
======================  =================================================================
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mercure.core.atomic import fsync_dir
from mercure.core.claims import Claim
from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import (
    DELETING_PREFIX,
    PAUSABLE_STAGES,
    DataFolder,
    Stage,
    is_visible,
)
from mercure.core.errors import ClaimError, TaskError
from mercure.core.events import EventClient
from mercure.core.requeue import (
    DISPATCH_FAIL_STAGE,
    PROCESSING_FAIL_STAGE,
    requeue_failed_dispatch,
    requeue_failed_processing,
    resend_task,
)
from mercure.core.studies import complete_study_folder, report_study_moved, study_names
from mercure.core.task import Task, event_uids, locate_task, move_task, read_task, write_task

REQUEUE_STAGES = (Stage.ERROR, Stage.SUCCESS, Stage.DISCARD, Stage.PROCESSING, Stage.OUTGOING)
"""Where requeue looks for a task (the queued stages only to say that it is still queued)."""
DELETE_STAGES = (Stage.PROCESSING, Stage.OUTGOING, Stage.ERROR, Stage.SUCCESS, Stage.DISCARD)
"""Where a task can be deleted from (the queues first: that is what deletion is for)."""
DISCARD_STAGES = (Stage.ERROR, Stage.PROCESSING, Stage.OUTGOING)
"""Where a task can be discarded from."""
TRASH_STAGE = Stage.DISCARD
"""Where a task being deleted waits, hidden: a finished stage, whose leftovers the cleaner
removes; on the same filesystem as every stage, so moving there is one rename."""

BUSY_HINTS = {
    Stage.PROCESSING: "a processor is running it; pause the queue (mercure pause processing) "
    "and try again when its module has ended",
    Stage.OUTGOING: "a dispatcher is sending it; pause the queue (mercure pause outgoing) and "
    "try again when the attempt has ended",
}
"""What to do about a task a service holds, by stage."""

Release = Callable[[Path], list[str]]
"""Frees a claimed task in ``processing/`` before deletion (stops a module a dead processor
left running); returns notes for the operator. The processor provides it."""
DeleteTree = Callable[[Path], None]
"""Removes a folder and everything in it (``shutil.rmtree`` unless a test needs otherwise)."""


def _claim(folder: Path, task_id: str, stage: Stage, doing: str) -> Claim:
    claim = Claim.try_take(folder)
    if claim is None:
        if not folder.exists():
            raise TaskError(f"task {task_id} left {stage.value}/ while being {doing}; try again")
        hint = BUSY_HINTS.get(stage, "another process holds it; try again later")
        raise ClaimError(f"task {task_id} in {stage.value}/ is being worked on: {hint}")
    return claim


def _read_or_none(folder: Path) -> Task | None:
    try:
        return read_task(folder)
    except TaskError:
        return None  # a damaged task can be deleted or discarded all the same


# --- requeue ------------------------------------------------------------------------------
def requeue(
    data: DataFolder,
    task_id: str,
    events: EventClient,
    *,
    user: str,
    targets: list[str] | None = None,
    config: MercureConfig | None = None,
) -> str:
    """Requeue a failed task or re-send a finished one, and report it; a line saying what
    happened. ``targets`` (re-sending only) replace the finished task's own; ``config``, when
    given, checks that they exist."""
    folder = locate_task(data, task_id, REQUEUE_STAGES)
    stage = Stage(folder.parent.name)
    if stage in (Stage.PROCESSING, Stage.OUTGOING):
        raise TaskError(f"task {task_id} is still queued in {stage.value}/: nothing to requeue")
    if stage is Stage.ERROR:
        if targets:
            raise TaskError(
                "--target is for re-sending tasks from success/ or discard/; a failed task "
                "goes back to its own targets"
            )
        return _requeue_failed(data, task_id, events, user)
    return _resend(data, stage, task_id, events, user, targets or [], config)


def _requeue_failed(data: DataFolder, task_id: str, events: EventClient, user: str) -> str:
    folder = data.stage(Stage.ERROR) / task_id
    stage = read_task(folder).info.fail_stage
    if stage == PROCESSING_FAIL_STAGE:
        moved = requeue_failed_processing(data, task_id)
    elif stage == DISPATCH_FAIL_STAGE:
        moved = requeue_failed_dispatch(data, task_id)
    else:
        raise TaskError(
            f"task {task_id} failed in {stage or 'an unknown stage'}: only processing and "
            "dispatch failures can be requeued (see its error.json for the reason)"
        )
    task = read_task(moved)
    series_uid, study_uid = event_uids(task)
    events.emit(
        "task.requeued",
        task_id=task_id,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"requeued by {user} after failing in {stage}",
        stage=moved.parent.name,
        user=user,
        task=task.model_dump(mode="json"),
    )
    return f"{task_id}: back in {moved.parent.name}/"


def _resend(
    data: DataFolder,
    stage: Stage,
    task_id: str,
    events: EventClient,
    user: str,
    targets: list[str],
    config: MercureConfig | None,
) -> str:
    if config is not None:
        for name in targets:
            if name not in config.targets:
                known = ", ".join(sorted(config.targets)) or "none"
                raise TaskError(f"no target '{name}' (targets: {known})")
    task, folder = resend_task(data, data.stage(stage) / task_id, targets, user=user)
    assert task.dispatch is not None
    series_uid, study_uid = event_uids(task)
    sent_to = ", ".join(task.dispatch.target_name)
    events.emit(
        "task.created",
        task_id=task.id,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"re-sent from task {task_id} in {stage.value}/ to {sent_to} by {user}",
        stage=Stage.OUTGOING.value,
        parent_id=task_id,
        user=user,
        task=task.model_dump(mode="json"),
    )
    events.emit(
        "task.resent",
        task_id=task_id,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"re-sent as task {task.id} to {sent_to} by {user}",
        new_task_id=task.id,
        from_stage=stage.value,
        targets=task.dispatch.target_name,
        user=user,
    )
    return (
        f"{task_id}: re-sent as task {task.id} in {folder.parent.name}/ (to {sent_to}); "
        f"{task_id} stays in {stage.value}/"
    )


# --- discard ------------------------------------------------------------------------------
def discard_task(
    data: DataFolder, task_id: str, events: EventClient, *, user: str, reason: str
) -> str:
    """Move a task in ``error/``, or a queued one no service is working on, to ``discard/``.

    The reason goes into its ``task.json`` (``info.reason``) and the ``task.discarded`` event;
    the task's files stay until the cleaner's retention for ``discard/`` removes them.
    """
    reason = reason.strip()
    if not reason:
        raise TaskError("say why the task is discarded (the reason is kept with it)")
    folder = locate_task(data, task_id, DISCARD_STAGES)
    stage = Stage(folder.parent.name)
    with _claim(folder, task_id, stage, "discarded") as claim:
        task = _read_or_none(folder)
        if task is not None:
            task.info.reason = f"discarded by {user}: {reason}"
            write_task(folder, task)
        destination = move_task(folder, data, Stage.DISCARD)
        claim.moved_to(destination)
    series_uid, study_uid = event_uids(task)
    events.emit(
        "task.discarded",
        severity="warning",
        task_id=task_id,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"discarded from {stage.value}/ by {user}: {reason}",
        stage=Stage.DISCARD.value,
        from_stage=stage.value,
        user=user,
        reason=reason,
        task=task.model_dump(mode="json") if task is not None else None,
    )
    return f"{task_id}: discarded from {stage.value}/"


# --- delete -------------------------------------------------------------------------------
def delete_task(
    data: DataFolder,
    task_id: str,
    events: EventClient,
    *,
    user: str,
    reason: str | None = None,
    release: Release | None = None,
    delete_tree: DeleteTree = shutil.rmtree,
) -> str:
    """Delete one task no process is working on, and report it; a line saying what happened.

    The task's claim is taken, the folder renamed out of sight into ``discard/.deleting-<id>``
    (one atomic rename: from then on it is gone for every service), ``task.deleted`` reported
    (state ``deleted``, with who and why), then its files removed; if that is interrupted, the
    cleaner finishes it. A task in ``processing/`` that a processor started (its work files are
    there) is deleted only with ``release``, which stops what a dead processor may have left
    running.
    """
    folder = locate_task(data, task_id, DELETE_STAGES)
    stage = Stage(folder.parent.name)
    notes: list[str] = []
    with _claim(folder, task_id, stage, "deleted") as claim:
        task = _read_or_none(folder)
        if stage is Stage.PROCESSING:
            if release is not None:
                notes += release(folder)
            elif any(not is_visible(name) for name in os.listdir(folder)):
                raise TaskError(
                    f"task {task_id} in processing/ was started by a processor, whose module "
                    f"may still run: delete it with `mercure delete {task_id}` on the "
                    "processor's host, which stops the module first"
                )
        hidden = data.stage(TRASH_STAGE) / f"{DELETING_PREFIX}{task_id}"
        if os.path.lexists(hidden):
            raise TaskError(
                f"an earlier deletion of {task_id} is still being finished ({hidden}); "
                "try again after the cleaner's next pass"
            )
        os.rename(folder, hidden)
        claim.moved_to(hidden)
        fsync_dir(folder.parent)
        fsync_dir(hidden.parent)
        _report_deleted(events, task_id, task, stage, user, reason)
        try:
            delete_tree(hidden)
            fsync_dir(hidden.parent)
        except OSError as exc:
            notes.append(
                f"not all of its files could be removed now ({exc}); the cleaner finishes "
                "removing them"
            )
    line = f"{task_id}: deleted from {stage.value}/"
    return line + "".join(f"; {note}" for note in notes)


def _report_deleted(
    events: EventClient,
    task_id: str,
    task: Task | None,
    stage: Stage,
    user: str,
    reason: str | None,
) -> None:
    series_uid, study_uid = event_uids(task)
    why = f": {reason}" if reason else ""
    events.emit(
        "task.deleted",
        severity="warning",
        task_id=task_id,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"deleted from {stage.value}/ by {user}{why}",
        stage="deleted",
        from_stage=stage.value,
        user=user,
        reason=reason,
        task=task.model_dump(mode="json") if task is not None else None,
    )


# --- studies ------------------------------------------------------------------------------
def studies_of(data: DataFolder, study_uid: str, rule: str | None = None) -> list[str]:
    """The study folders collecting ``study_uid`` (only the one for ``rule`` if given)."""
    prefix = f"{study_uid}#"
    names = [name for name in study_names(data) if name.startswith(prefix)]
    if rule is not None:
        names = [name for name in names if name == f"{prefix}{rule}"]
    return names


def complete_study(
    data: DataFolder,
    name: str,
    events: EventClient,
    *,
    user: str,
    discard: bool = False,
    reason: str = "",
) -> str:
    """Complete the study folder ``name`` (``<StudyInstanceUID>#<rule>``) now: on to its
    action's stage, or to ``discard/``; a line saying where it went."""
    if not is_visible(name) or "/" in name or "\0" in name:
        raise TaskError(f"not a study being collected: {name!r}")
    if not (data.stage(Stage.STUDIES) / name).is_dir():
        raise TaskError(f"no study {name} is being collected in studies/")
    reason = reason or f"completed by {user}"
    completed = complete_study_folder(data, name, forced=True, discard=discard, reason=reason)
    if completed is None:
        if not (data.stage(Stage.STUDIES) / name).exists():
            raise TaskError(f"study {name} left studies/ meanwhile (the router completed it)")
        raise ClaimError("busy (the router is adding a series); try again")
    report_study_moved(events, completed.task, completed.stage, completed.path, reason, user=user)
    return f"{name}: task {completed.task.id} moved to {completed.stage.value}/"


# --- pause and resume ---------------------------------------------------------------------
def _pausable(stage: Stage | str) -> Stage:
    try:
        found = Stage(stage)
    except ValueError:
        found = None
    if found not in PAUSABLE_STAGES:
        names = " and ".join(s.value for s in PAUSABLE_STAGES)
        raise TaskError(f"the {stage} queue cannot be paused (only {names} can)")
    assert found is not None
    return found


def pause_stage(
    data: DataFolder, stage: Stage | str, events: EventClient, *, user: str, reason: str = ""
) -> str:
    """Stop services from taking new work out of ``stage`` (work under way goes on)."""
    found = _pausable(stage)
    note = f"paused by {user}" + (f": {reason}" if reason else "")
    data.pause(found, note)
    events.emit(
        "queue.paused",
        message=f"{found.value} queue {note}",
        stage=found.value,
        user=user,
        reason=reason or None,
    )
    return f"{found.value} queue paused"


def resume_stage(data: DataFolder, stage: Stage | str, events: EventClient, *, user: str) -> str:
    """Let services take work from ``stage`` again."""
    found = _pausable(stage)
    data.resume(found)
    events.emit(
        "queue.resumed",
        message=f"{found.value} queue resumed by {user}",
        stage=found.value,
        user=user,
    )
    return f"{found.value} queue resumed"
