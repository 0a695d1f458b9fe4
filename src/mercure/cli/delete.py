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
import sys
from functools import partial

from mercure.cli.requeue import command_line_user
from mercure.core.config import load_config
from mercure.core.datafolder import DataFolder
from mercure.core.delivery import command_events
from mercure.core.errors import MercureError
from mercure.core.operations import delete_task


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


def _confirmed(task_ids: list[str]) -> bool:
    """Ask at a terminal; without one, only --yes deletes."""
    if not sys.stdin.isatty():
        print("error: not at a terminal: add --yes to delete without asking", file=sys.stderr)
        return False
    answer = input(f"delete {len(task_ids)} task(s): {' '.join(task_ids)}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete each task (:func:`mercure.core.operations.delete_task`); exit 1 if any could not
    be deleted (or deletion was not confirmed)."""
    from mercure.processor.requeue import release_for_deletion

    config = load_config(args.config).config
    if not args.yes and not _confirmed(args.task_ids):
        return 1
    data = DataFolder(config.data_dir)
    release = partial(release_for_deletion, config=config.processing)
    failed = 0
    user = command_line_user()
    with command_events(config, "cli") as events:
        for task_id in args.task_ids:
            try:
                line = delete_task(
                    data, task_id, events, user=user, reason=args.reason, release=release
                )
                print(line)
            except (MercureError, OSError) as exc:
                print(f"{task_id}: not deleted: {exc}")
                failed += 1
    return 1 if failed else 0
