"""``mercure requeue TASK_ID``: send a task again.

- A task in ``error/`` goes back to the stage where it failed (``fail_stage`` in its
  ``task.json``/``error.json``): processing failures to ``processing/`` (their original input
  was preserved), dispatch failures to ``outgoing/`` (only what no target confirmed is sent
  again). It stays the same task.
- A task in ``success/`` or ``discard/`` is re-sent as a **new** task in ``outgoing/`` (new id,
  its own copies of the files), to its own targets or to those named with ``--target``; the
  old task is kept. ``task.created`` of the new task names the old one as ``parent_id``, and
  ``task.resent`` on the old one names the new one.
"""

from __future__ import annotations

import argparse
import getpass

from mercure.core.config import MercureConfig, load_config
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.delivery import command_events
from mercure.core.errors import MercureError, TaskError
from mercure.core.events import EventClient
from mercure.core.task import event_uids, locate_task, read_task

REQUEUE_STAGES = (Stage.ERROR, Stage.SUCCESS, Stage.DISCARD, Stage.PROCESSING, Stage.OUTGOING)
"""Where requeue looks for a task (the queued stages only to say that it is still queued)."""


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure requeue TASK_ID [TASK_ID ...] [--target NAME ...]``."""
    requeue = commands.add_parser(
        "requeue",
        parents=[common],
        help="send tasks again: failed ones back where they failed, finished ones as new tasks",
        description="A task in error/ goes back to the stage it failed in. A task in success/ "
        "or discard/ is sent again as a new task in outgoing/ (a new id and its own copies of "
        "the files), to its targets or to those given with --target; the old task is kept.",
    )
    requeue.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    requeue.add_argument(
        "--target",
        dest="targets",
        action="append",
        default=[],
        metavar="NAME",
        help="re-send a finished task to this target instead of its own (repeatable)",
    )
    requeue.set_defaults(handler=cmd_requeue)


def command_line_user() -> str:
    """Who acts, as events record it for a command run by hand."""
    return f"{getpass.getuser()} (command line)"


def requeue(
    data: DataFolder,
    task_id: str,
    events: EventClient,
    *,
    targets: list[str] | None = None,
    config: MercureConfig | None = None,
) -> str:
    """Requeue or re-send one task and report it; a line saying what happened."""
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
        return _requeue_failed(data, task_id, events)
    return _resend(data, folder.parent.name, task_id, events, targets or [], config)


def _requeue_failed(data: DataFolder, task_id: str, events: EventClient) -> str:
    folder = data.stage(Stage.ERROR) / task_id
    stage = read_task(folder).info.fail_stage
    if stage == "processing":
        from mercure.processor.requeue import requeue_processing

        moved = requeue_processing(data, task_id)
    elif stage == "dispatch":
        from mercure.dispatcher.requeue import requeue_task

        moved = requeue_task(data, task_id)
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
        message=f"requeued from the command line after failing in {stage}",
        stage=moved.parent.name,
        user=command_line_user(),
        task=task.model_dump(mode="json"),
    )
    return f"{task_id}: back in {moved.parent.name}/"


def _resend(
    data: DataFolder,
    stage: str,
    task_id: str,
    events: EventClient,
    targets: list[str],
    config: MercureConfig | None,
) -> str:
    from mercure.dispatcher.requeue import resend_task

    if config is not None:
        for name in targets:
            if name not in config.targets:
                known = ", ".join(sorted(config.targets)) or "none"
                raise TaskError(f"no target '{name}' (targets: {known})")
    user = command_line_user()
    task, folder = resend_task(data, data.stage(stage) / task_id, targets, user=user)
    assert task.dispatch is not None
    series_uid, study_uid = event_uids(task)
    sent_to = ", ".join(task.dispatch.target_name)
    events.emit(
        "task.created",
        task_id=task.id,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"re-sent from task {task_id} in {stage}/ to {sent_to} by {user}",
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
        from_stage=stage,
        targets=task.dispatch.target_name,
        user=user,
    )
    return (
        f"{task_id}: re-sent as task {task.id} in {folder.parent.name}/ (to {sent_to}); "
        f"{task_id} stays in {stage}/"
    )


def cmd_requeue(args: argparse.Namespace) -> int:
    """Requeue each task; exit 1 if any could not be requeued."""
    config = load_config(args.config).config
    data = DataFolder(config.data_dir)
    failed = 0
    with command_events(config, "cli") as events:
        for task_id in args.task_ids:
            try:
                print(requeue(data, task_id, events, targets=args.targets, config=config))
            except (MercureError, OSError) as exc:
                print(f"{task_id}: not requeued: {exc}")
                failed += 1
    return 1 if failed else 0
