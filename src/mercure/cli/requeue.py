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

from mercure.core.config import load_config
from mercure.core.datafolder import DataFolder
from mercure.core.delivery import command_events
from mercure.core.errors import MercureError
from mercure.core.operations import requeue


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


def cmd_requeue(args: argparse.Namespace) -> int:
    """Requeue each task (:func:`mercure.core.operations.requeue`); exit 1 if any could not
    be requeued."""
    config = load_config(args.config).config
    data = DataFolder(config.data_dir)
    user = command_line_user()
    failed = 0
    with command_events(config, "cli") as events:
        for task_id in args.task_ids:
            try:
                print(
                    requeue(data, task_id, events, user=user, targets=args.targets, config=config)
                )
            except (MercureError, OSError) as exc:
                print(f"{task_id}: not requeued: {exc}")
                failed += 1
    return 1 if failed else 0
