"""``mercure delete TASK_ID``: remove a task that no process is working on.

A deletion takes the task's claim (a task a service holds, say a dispatcher sending it, is
refused with the reason), renames the folder out of sight into ``discard/.deleting-<id>`` (one
atomic rename: from then on the task is gone for every service), reports ``task.deleted`` to
the bookkeeper (state ``deleted``, with who, when, from where and why), then removes the files.
If the removal is interrupted, the cleaner finishes it: it removes ``.deleting-*`` leftovers of
the finished stages on every pass.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from mercure.cleaner.removal import DELETING_PREFIX, DeleteTree
from mercure.cli.requeue import command_line_user
from mercure.core.atomic import fsync_dir
from mercure.core.claims import Claim
from mercure.core.config import MercureConfig, load_config
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.delivery import command_events
from mercure.core.errors import ClaimError, MercureError, TaskError
from mercure.core.events import EventClient
from mercure.core.task import Task, event_uids, locate_task, read_task

DELETE_STAGES = (Stage.PROCESSING, Stage.OUTGOING, Stage.ERROR, Stage.SUCCESS, Stage.DISCARD)
"""Where a task can be deleted from (the queues first: that is what deletion is for)."""

TRASH_STAGE = Stage.DISCARD
"""Where a task being deleted waits, hidden: a finished stage, whose leftovers the cleaner
removes; on the same filesystem as every stage, so moving there is one rename."""

_BUSY_HINTS = {
    Stage.PROCESSING: "a processor is running it; pause the queue (mercure pause processing) "
    "and try again when its module has ended",
    Stage.OUTGOING: "a dispatcher is sending it; pause the queue (mercure pause outgoing) and "
    "try again when the attempt has ended",
}


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure delete TASK_ID [TASK_ID ...] [--yes] [--reason TEXT]``."""
    delete = commands.add_parser(
        "delete",
        parents=[common],
        help="delete queued or finished tasks that no service is working on",
        description="Delete tasks from processing/, outgoing/, error/, success/ or discard/. A "
        "task a service is working on right now is refused. The bookkeeper records each "
        "deletion (state 'deleted', who, when, from where and why).",
    )
    delete.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--reason", help="why, for the bookkeeper's record")
    delete.set_defaults(handler=cmd_delete)


def delete_task(
    data: DataFolder,
    task_id: str,
    events: EventClient,
    *,
    user: str,
    reason: str | None = None,
    config: MercureConfig | None = None,
    delete_tree: DeleteTree = shutil.rmtree,
) -> str:
    """Delete one task and report it; a line saying what happened.

    Raises :class:`TaskError` for an unknown task, :class:`ClaimError` for one a process holds.
    """
    folder = locate_task(data, task_id, DELETE_STAGES)
    stage = Stage(folder.parent.name)
    claim = Claim.try_take(folder)
    if claim is None:
        if not folder.exists():
            raise TaskError(f"task {task_id} left {stage.value}/ while being deleted; try again")
        hint = _BUSY_HINTS.get(stage, "another process holds it; try again later")
        raise ClaimError(f"task {task_id} in {stage.value}/ is being worked on: {hint}")
    with claim:
        try:
            task: Task | None = read_task(folder)
        except TaskError:
            task = None  # a damaged task can be deleted all the same
        notes: list[str] = []
        if stage is Stage.PROCESSING and config is not None:
            from mercure.processor.requeue import release_for_deletion

            notes += release_for_deletion(folder, config.processing)
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
        _report(events, task_id, task, stage, user, reason)
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


def _report(
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


def _confirmed(task_ids: list[str]) -> bool:
    """Ask at a terminal; without one, only --yes deletes."""
    if not sys.stdin.isatty():
        print("error: not at a terminal: add --yes to delete without asking", file=sys.stderr)
        return False
    answer = input(f"delete {len(task_ids)} task(s): {' '.join(task_ids)}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete each task; exit 1 if any could not be deleted (or deletion was not confirmed)."""
    config = load_config(args.config).config
    if not args.yes and not _confirmed(args.task_ids):
        return 1
    data = DataFolder(config.data_dir)
    failed = 0
    user = command_line_user()
    with command_events(config, "cli") as events:
        for task_id in args.task_ids:
            try:
                print(
                    delete_task(data, task_id, events, user=user, reason=args.reason, config=config)
                )
            except (MercureError, OSError) as exc:
                print(f"{task_id}: not deleted: {exc}")
                failed += 1
    return 1 if failed else 0
