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
import json
import sys

from pydantic import TypeAdapter, ValidationError

from mercure.core.config import load_config
from mercure.core.config.loader import format_path
from mercure.core.config.models import Target
from mercure.core.errors import MercureError
from mercure.core.masking import register_target_secrets, scrub
from mercure.core.targettest import TargetTestReport, TestStep
from mercure.dispatcher.targets import TargetConfig, run_test, test_target

MAX_DEFINITION = 1 << 20
"""Bytes of a definition read from standard input, at most."""

MARKS = {"ok": "ok", "failed": "FAILED", "warning": "warning", "skipped": "skipped"}


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add the dispatcher's subcommands to ``mercure``."""
    parser = commands.add_parser(
        "test-target",
        parents=[common],
        help="test a target step by step: C-ECHO, DICOMweb probe, SFTP login and write, S3 "
        "bucket, folder",
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
    text = sys.stdin.read(MAX_DEFINITION + 1)
    if len(text) > MAX_DEFINITION:
        raise MercureError(f"the definition on standard input is over {MAX_DEFINITION} bytes")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MercureError(
            f"the definition on standard input is not JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    if isinstance(document, dict):
        # Masked before anything is validated: an error message may quote a value.
        register_target_secrets(document)
    try:
        target: TargetConfig = TypeAdapter(Target).validate_python(document)
    except ValidationError as exc:
        tag = document.get("type") if isinstance(document, dict) else None
        issues = "; ".join(
            f"{format_path(_without_tag(error['loc'], tag)) or 'definition'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise MercureError(f"invalid definition of target {name!r}: {issues}") from None
    return target


def _without_tag(loc: tuple[str | int, ...], tag: object) -> tuple[str | int, ...]:
    """A pydantic location without the union's tag (``('dicom', 'port')`` is ``port``)."""
    return loc[1:] if loc and loc[0] == tag else loc


def cmd_test_target(args: argparse.Namespace) -> int:
    """Test one target; exit code 0 when it works, 1 with the reason when not."""
    try:
        if args.definition:
            report = asyncio.run(run_test(args.name, _read_definition(args.name)))
        else:
            config = load_config(args.config).config
            report = asyncio.run(test_target(dict(config.targets), args.name))
    except MercureError as exc:
        message = scrub(str(exc))
        report = TargetTestReport(
            target=args.name,
            ok=False,
            summary=message,
            steps=[TestStep(name="configuration", state="failed", detail=message)],
        )
    if args.json:
        print(report.model_dump_json())
        return 0 if report.ok else 1
    for step in report.steps:
        detail = f": {step.detail}" if step.detail else ""
        print(f"  {MARKS[step.state]:8} {step.name}{detail}")
    if report.ok:
        print(f"{args.name}: OK: {report.summary}")
        return 0
    print(f"{args.name}: FAILED: {report.summary}", file=sys.stderr)
    return 1
