"""A *Test* button's check, run as ``python -m mercure <check> ... --json --definition -``.

The web interface does not import the services it tests (services import core only), and a
check may hang on a silent peer: so the command runs as a child process, gets the definition on
standard input (never as an argument: it holds passwords and tokens, and arguments are visible
to everyone on the host), is killed after its timeout, and prints one JSON report on standard
output. At most :data:`MAX_RUNNING` checks (of every kind together) run at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mercure.core.masking import excerpt, scrub

log = logging.getLogger(__name__)

MAX_OUTPUT = 1 << 20
"""Bytes of a report read at most."""
MAX_RUNNING = 4
"""Checks running at once in this web interface, at most (each is a process)."""

Report = TypeVar("Report", bound=BaseModel)


class CheckFailed(Exception):
    """The check gave no report: too many running, could not start, timed out, or said
    something else; the message says which (secrets masked)."""


class _Running:
    """How many checks run now (the web interface serves requests on one event loop)."""

    count = 0


async def run_check(
    arguments: list[str],
    definition: dict[str, Any],
    report: type[Report],
    *,
    timeout: float,
) -> Report:
    """Run ``mercure <arguments>`` with ``definition`` as JSON on standard input; its report.

    Register the definition's secrets before calling: what the child says is scrubbed.
    """
    if _Running.count >= MAX_RUNNING:
        raise CheckFailed(f"{MAX_RUNNING} tests are running already; try again shortly")
    _Running.count += 1
    try:
        return await _run(arguments, definition, report, timeout)
    finally:
        _Running.count -= 1


async def _run(
    arguments: list[str], definition: dict[str, Any], report: type[Report], timeout: float
) -> Report:
    command = arguments[0]
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mercure",
            *arguments,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:
        raise CheckFailed(f"cannot start mercure {command}: {exc}") from None
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(json.dumps(definition).encode()), timeout
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise CheckFailed(f"the test took longer than {timeout:.0f} s and was stopped") from None
    try:
        return report.model_validate_json(stdout[:MAX_OUTPUT].strip() or b"{}")
    except ValidationError:
        said = excerpt(stderr.decode("utf-8", "replace") or stdout.decode("utf-8", "replace"))
        log.warning("mercure %s exited %s without a report", command, process.returncode)
        raise CheckFailed(
            f"mercure {command} gave no report (exit {process.returncode}): {scrub(said)}"
        ) from None
