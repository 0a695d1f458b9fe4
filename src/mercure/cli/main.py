"""``mercure``: the one command line of mercure-router.

Core subcommands live here; each service adds ``mercure <service>`` (run that service alone)
and may add its own commands through ``mercure.<service>.cli.register(subparsers)``.
Start-up order is always: load config, configure logging, build objects, run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mercure import __version__
from mercure.cli import delete, import_config, logs, requeue
from mercure.core.config import FolderTarget, LoadedConfig, MercureConfig, load_config
from mercure.core.config.reference import render_reference
from mercure.core.datafolder import PAUSABLE_STAGES, DataFolder
from mercure.core.delivery import command_events
from mercure.core.errors import ConfigError, MercureError
from mercure.core.logs import LogFile, configure_logging, log_file_for
from mercure.core.operations import pause_stage, resume_stage
from mercure.supervisor.registry import SERVICE_NAMES, installed_services, service_class
from mercure.worker import cli as worker_cli

log = logging.getLogger(__name__)

STARTER = Path(__file__).with_name("starter.yaml")


CONFIG_HELP = "configuration file (default: $MERCURE_CONFIG, else ./mercure.yaml)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of this build.

    ``--config`` is accepted on the top level, on command groups and on every command
    (``mercure --config X study list``, ``mercure study --config X list``, ``mercure study list
    --config X``); the one nearest to the command wins.
    """
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand that was not given --config must not overwrite the value an
    # outer level parsed (argparse copies every default of a subparser into the namespace).
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    parser = argparse.ArgumentParser(
        prog="mercure", description="mercure-router: DICOM routing and processing server"
    )
    parser.add_argument("--version", action="version", version=f"mercure-router {__version__}")
    parser.add_argument("--config", metavar="PATH", default=None, help=CONFIG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init", parents=[common], help="write a starter mercure.yaml and the data folder"
    )
    init.add_argument("dir", nargs="?", default=".", help="folder to initialise (default: .)")
    init.add_argument("--force", action="store_true", help="overwrite an existing mercure.yaml")
    init.set_defaults(handler=cmd_init)

    check = commands.add_parser(
        "check-config", parents=[common], help="validate the configuration file"
    )
    check.set_defaults(handler=cmd_check_config)

    run = commands.add_parser("run", parents=[common], help="run all services under a supervisor")
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser("status", parents=[common], help="show services and queue depths")
    status.set_defaults(handler=cmd_status)

    for verb, handler in (("pause", cmd_pause), ("resume", cmd_resume)):
        sub = commands.add_parser(verb, parents=[common], help=f"{verb} a queue")
        sub.add_argument("stage", choices=[stage.value for stage in PAUSABLE_STAGES])
        sub.set_defaults(handler=handler)

    reference = commands.add_parser(
        "config-reference", parents=[common], help="print the configuration reference (Markdown)"
    )
    reference.set_defaults(handler=cmd_config_reference)

    for name in installed_services():
        service = commands.add_parser(name, parents=[common], help=f"run the {name} alone")
        service.add_argument("--instance", help="instance name (default: host name)")
        service.set_defaults(handler=cmd_service, service=name)
    requeue.register(commands, common)
    delete.register(commands, common)
    logs.register(commands, common)
    import_config.register(commands, common)
    worker_cli.register(commands, common)
    for name in SERVICE_NAMES:
        try:
            extension = importlib.import_module(f"mercure.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"mercure.{name}", f"mercure.{name}.cli"):
                raise
            continue
        extension.register(commands, common)
    for sub in _all_subparsers(parser):
        if not any("--config" in action.option_strings for action in sub._actions):
            sub.add_argument(
                "--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP
            )
    return parser


def _all_subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser``: commands and command groups, at any depth."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.append(child)
                found.extend(_all_subparsers(child))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit code (0 success, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MercureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


def console_main() -> None:
    """Entry point of the installed ``mercure`` script."""
    sys.exit(main())


def _configure_from(
    args: argparse.Namespace, *, service: str | None = None, instance: str | None = None
) -> LoadedConfig:
    """Load the configuration and set up logging; a service also logs to its file."""
    loaded = load_config(args.config)
    settings = loaded.config.logging
    file = None
    if service is not None and settings.files:
        file = LogFile(
            log_file_for(loaded.config.data_dir, service, instance),
            max_bytes=settings.max_file_mb << 20,
            backups=settings.keep_files,
        )
    configure_logging(settings.level, settings.format, file=file)
    return loaded


def cmd_init(args: argparse.Namespace) -> int:
    """Write a starter configuration and create the data folder."""
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = Path(args.config) if args.config else folder / "mercure.yaml"
    if target.exists() and not args.force:
        print(f"{target} exists; keeping it (use --force to overwrite)")
    else:
        from mercure.core.atomic import atomic_write_text

        atomic_write_text(target, STARTER.read_text(encoding="utf-8"))
        print(f"wrote {target}")
    loaded = load_config(target)
    DataFolder(loaded.config.data_dir).ensure()
    print(f"data folder ready: {loaded.config.data_dir}")
    _init_api_key(loaded)
    return 0


def _init_api_key(loaded: LoadedConfig) -> None:
    """Make the bookkeeper's API key in the data folder, unless the configuration sets one."""
    from mercure.core.apikey import ApiKeys, ensure_key_file, key_path

    keys = ApiKeys.from_config(loaded.config)
    if keys.configured:
        print("bookkeeper API key: bookkeeper.api_key of the configuration")
        return
    made = ensure_key_file(loaded.config.data_dir)
    state = "written to" if made else "kept in"
    print(f"bookkeeper API key {state} {key_path(loaded.config.data_dir)} (mode 0600)")


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration; print every issue with its key path, then warnings.

    A disabled rule that does not compile does not stop the configuration from loading, but
    it is an error here (exit status 1)."""
    from mercure.core.config.modulecheck import module_warnings
    from mercure.core.config.sourcecheck import source_warnings

    loaded = load_config(args.config)
    config = loaded.config
    print(
        f"{loaded.path}: ok ({len(config.rules)} rules, {len(config.targets)} targets, "
        f"{len(config.modules)} modules, {len(config.receiver.listeners)} listeners)"
    )
    for line in _resolved_folders(config):
        print(f"  {line}")
    for warning in [*module_warnings(config), *source_warnings(config)]:
        print(f"warning: {warning}")
    for name, reason in loaded.rule_errors.items():
        print(f"error: rules.{name}.rule: {reason}")
    return 1 if loaded.rule_errors else 0


def _resolved_folders(config: MercureConfig) -> list[str]:
    """Where the local folders of the file point (relative ones are relative to the file)."""
    folders = [("data_dir", config.data_dir)]
    folders += [
        (f"targets.{name}.folder", target.folder)
        for name, target in config.targets.items()
        if isinstance(target, FolderTarget)
    ]
    return [
        f"{key}: {path}" + ("" if path.exists() else " (does not exist yet)")
        for key, path in folders
    ]


def cmd_run(args: argparse.Namespace) -> int:
    """Run every installed service under the supervisor."""
    from mercure.supervisor.run import run_all

    return run_all(_configure_from(args, service="supervisor"))


def cmd_status(args: argparse.Namespace) -> int:
    """Print the services' liveness and the queue depths."""
    from mercure.supervisor.run import status_report

    print(status_report(load_config(args.config)))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause a queue: services take no new work from it."""
    return _switch_queue(args, pause_stage)


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume a paused queue."""
    return _switch_queue(args, resume_stage)


def _switch_queue(args: argparse.Namespace, operation: Callable[..., str]) -> int:
    config = load_config(args.config).config
    with command_events(config, "cli") as events:
        print(
            operation(
                DataFolder(config.data_dir), args.stage, events, user=requeue.command_line_user()
            )
        )
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    """Print the configuration reference generated from the models."""
    print(render_reference(), end="")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    """Run one service in the foreground."""
    from mercure.core.config import ConfigSource

    loaded = _configure_from(args, service=args.service, instance=args.instance)
    source = ConfigSource(loaded.path, current=loaded)
    service = service_class(args.service)(source, instance=args.instance)
    return service.run()
