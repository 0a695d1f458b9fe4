"""``mercure worker --stages processing,dispatch [--queues gpu,default] [--instance NAME]``."""

from __future__ import annotations

import argparse
import re
import socket
from typing import cast

from mercure.core.datafolder import DataFolder
from mercure.core.errors import MercureError
from mercure.core.heartbeat import instance_in_use
from mercure.core.workqueue import STAGE_FOLDERS, WorkStage

QUEUE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure worker``."""
    parser = commands.add_parser(
        "worker",
        parents=[common],
        help="run processing and dispatch tasks from the scale-out broker (docs/scale-out.md)",
    )
    parser.add_argument(
        "--stages",
        default="processing,dispatch",
        help="comma-separated stages to serve: processing, dispatch (default: both)",
    )
    parser.add_argument(
        "--queues",
        default="default",
        help="comma-separated work queues to serve, e.g. gpu,default (default: default)",
    )
    parser.add_argument("--instance", help="instance name (default: host name); one per process")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="tasks run at once by this process (default 1)"
    )
    parser.set_defaults(handler=cmd_worker)


def _names(value: str, what: str, allowed: re.Pattern[str] | None = None) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise MercureError(f"--{what}: give at least one name")
    for name in names:
        if allowed is not None and not allowed.match(name):
            raise MercureError(
                f"--{what}: {name!r} is not a queue name (lower case, digits, '_' and '-')"
            )
    return list(dict.fromkeys(names))


def cmd_worker(args: argparse.Namespace) -> int:
    """Load the configuration, check scale-out is on, then consume until stopped."""
    from mercure.cli.main import _configure_from
    from mercure.core.config import ConfigSource

    stages = _names(args.stages, "stages")
    unknown = [stage for stage in stages if stage not in STAGE_FOLDERS]
    if unknown:
        raise MercureError(
            f"--stages: unknown {', '.join(unknown)}; use processing and/or dispatch"
        )
    queues = _names(args.queues, "queues", QUEUE_PATTERN)
    if args.concurrency < 1:
        raise MercureError("--concurrency: at least 1")
    instance = args.instance or socket.gethostname()
    loaded = _configure_from(args, service="worker", instance=instance)
    settings = loaded.config.scale_out
    if settings.engine != "celery":
        raise MercureError(
            f"{loaded.path}: scale_out.engine is {settings.engine!r}: a worker needs "
            "'celery' and a broker (docs/scale-out.md)"
        )
    in_use = instance_in_use(DataFolder(loaded.config.data_dir).run_dir, "worker", instance)
    if in_use is not None:
        raise MercureError(
            f"--instance {instance}: a worker of that name runs on {in_use.host} "
            f"(pid {in_use.pid}, heartbeat at {in_use.time:%H:%M:%S} UTC); instance names must be "
            "unique across hosts (docs/scale-out.md)"
        )
    from mercure.worker.consumer import consume
    from mercure.worker.runtime import WorkerRuntime

    runtime = WorkerRuntime(
        ConfigSource(loaded.path, current=loaded), instance, cast(list[WorkStage], stages)
    )
    return consume(
        runtime,
        settings,
        queues,
        concurrency=args.concurrency,
        loglevel=loaded.config.logging.level,
    )
