"""``mercure requeue TASK_ID``: send a failed task back to the stage where it failed.

A task in ``error/`` carries ``fail_stage`` in its ``task.json``/``error.json``; processing
failures go back to ``processing/`` (their original input was preserved), dispatch failures to
``outgoing/`` (only what no target confirmed is sent again).
"""

from __future__ import annotations

import argparse
import getpass

from mercure.core.config import load_config
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.delivery import command_events
from mercure.core.errors import MercureError, TaskError
from mercure.core.events import EventClient
from mercure.core.task import event_uids, read_task


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure requeue TASK_ID [TASK_ID ...]``."""
    requeue = commands.add_parser(
        "requeue", parents=[common], help="send failed tasks back to the stage they failed in"
    )
    requeue.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    requeue.set_defaults(handler=cmd_requeue)


def requeue(data: DataFolder, task_id: str, events: EventClient) -> str:
    """Requeue one task from ``error/`` and report it; a line saying where it went."""
    folder = data.stage(Stage.ERROR) / task_id
    if not folder.is_dir():
        raise TaskError(f"no task {task_id} in {data.stage(Stage.ERROR)}")
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
        user=f"{getpass.getuser()} (command line)",
        task=task.model_dump(mode="json"),
    )
    return f"{task_id}: back in {moved.parent.name}/"


def cmd_requeue(args: argparse.Namespace) -> int:
    """Requeue each task; exit 1 if any could not be requeued."""
    config = load_config(args.config).config
    data = DataFolder(config.data_dir)
    failed = 0
    with command_events(config, "cli") as events:
        for task_id in args.task_ids:
            try:
                print(requeue(data, task_id, events))
            except (MercureError, OSError) as exc:
                print(f"{task_id}: not requeued: {exc}")
                failed += 1
    return 1 if failed else 0
