"""``mercure import-config mercure.json [--users users.json] [-o mercure.yaml]``.

Converts mercure 0.4.1's configuration (and its users) and prints a report of every key: mapped,
changed in meaning, or not carried and why. The written file holds no secret: it refers to
environment variables, listed in the report and in the file's header.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mercure.core.atomic import atomic_write_text
from mercure.core.errors import PermanentError


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure import-config``."""
    parser = commands.add_parser(
        "import-config",
        parents=[common],
        help="convert mercure's mercure.json (and users.json) into a mercure.yaml",
        description="Convert mercure 0.4.1's configuration. The report (standard output with "
        "-o, standard error without) accounts for every key; secrets become ${VARIABLE} "
        "references. See docs/migrating-from-mercure.md.",
    )
    parser.add_argument("source", help="mercure's mercure.json")
    parser.add_argument("--users", metavar="USERS_JSON", help="mercure's users.json")
    parser.add_argument(
        "-o", "--output", metavar="YAML", help="file to write (default: standard output)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.set_defaults(handler=cmd_import_config)


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PermanentError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PermanentError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None


def cmd_import_config(args: argparse.Namespace) -> int:
    """Convert, write the YAML, print the report."""
    # Imported here: the converter brings the bookkeeper's database layer, which every service
    # process would otherwise load at start (about 25 MB each) for a command it never runs.
    from mercure.migrate import import_mercure_config, import_mercure_users
    from mercure.migrate.output import render_yaml

    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.force:
        raise PermanentError(f"{output} exists; keeping it (use --force to overwrite)")
    try:
        result = import_mercure_config(_read_json(args.source))
        users = import_mercure_users(_read_json(args.users), result.report) if args.users else []
    except PermanentError as exc:
        raise PermanentError(f"{args.source}: {exc}") from None
    text = render_yaml(result.document, result.report, Path(args.source).name)
    report = result.report.render()
    if users:
        report += (
            "\nUsers to create, each with a temporary password they replace at the first "
            "sign-in (hashes are not carried):\n"
        )
        config = str(output) if output is not None else None
        report += "".join(f"  {user.command(config)}\n" for user in users)
    if output is None:
        sys.stdout.write(text)
        sys.stderr.write(report)
    else:
        atomic_write_text(output, text)
        sys.stdout.write(report)
        print(f"\nwrote {output}; check it with: mercure --config {output} check-config")
    return 0
