"""The dispatcher's commands: ``mercure test-target NAME``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from mercure.core.config import load_config
from mercure.core.errors import MercureError
from mercure.dispatcher.targets import test_target


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add the dispatcher's subcommands to ``mercure``."""
    parser = commands.add_parser(
        "test-target",
        parents=[common],
        help="test a target: C-ECHO, DICOMweb probe, SFTP login and write, S3 bucket, folder",
    )
    parser.add_argument("name", help="target name in the configuration")
    parser.set_defaults(handler=cmd_test_target)


def cmd_test_target(args: argparse.Namespace) -> int:
    """Test one target; exit code 0 when it works, 1 with the reason when not."""
    config = load_config(args.config).config
    try:
        message = asyncio.run(test_target(dict(config.targets), args.name))
    except MercureError as exc:
        print(f"{args.name}: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: OK: {message}")
    return 0
