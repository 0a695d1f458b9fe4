"""The dispatcher's commands: ``mercure test-target NAME [--json] [--definition -]``.

``--definition -`` tests a target that is not saved: one target's definition as a JSON object
on standard input (``${ENV}`` references already expanded). Only standard input, never an
argument or a file: the definition may hold a password, and arguments are visible to every
user of the host (``ps``) while files stay behind. Its secrets are masked in everything the
command prints, like those of a loaded configuration.
"""

from __future__ import annotations

import argparse
import asyncio

from mercure.core.config import load_config
from mercure.core.config.definition import read_definition, validate_definition
from mercure.core.config.models import Target
from mercure.core.errors import MercureError
from mercure.core.masking import register_model_secrets, register_target_secrets, scrub
from mercure.core.targettest import failed_report, print_report
from mercure.dispatcher.targets import TargetConfig, run_test, test_target


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add the dispatcher's subcommands to ``mercure``."""
    parser = commands.add_parser(
        "test-target",
        parents=[common],
        help="test a target step by step: C-ECHO, DICOMweb probe, SFTP or rsync login and "
        "write, S3 bucket, XNAT login and project, folder, a plug-in's own steps",
    )
    parser.add_argument("name", help="target name in the configuration")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--definition",
        metavar="-",
        choices=["-"],
        help="test this definition instead of the configured one: one target as a JSON "
        "object on standard input (never a file or an argument: it may hold secrets)",
    )
    parser.set_defaults(handler=cmd_test_target)


def _read_definition(name: str) -> TargetConfig:
    """The target definition on standard input; MercureError naming what is wrong."""
    document = read_definition()
    if isinstance(document, dict):
        # Masked before anything is validated: an error message may quote a value.
        register_target_secrets(document)
    target: TargetConfig = validate_definition(document, Target, f"target {name!r}")
    register_model_secrets(target)  # a plug-in's secrets may have other names
    return target


def cmd_test_target(args: argparse.Namespace) -> int:
    """Test one target; exit code 0 when it works, 1 with the reason when not."""
    try:
        if args.definition:
            report = asyncio.run(run_test(args.name, _read_definition(args.name)))
        else:
            config = load_config(args.config).config
            report = asyncio.run(test_target(dict(config.targets), args.name))
    except MercureError as exc:
        report = failed_report(args.name, scrub(str(exc)))
    return print_report(args.name, report, as_json=args.json)
