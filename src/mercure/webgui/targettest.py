"""Testing a target from the web interface: ``mercure test-target`` run as a subprocess.

The web interface does not import the dispatcher (services import core only), and a test may
hang on a silent peer: so it runs ``python -m mercure test-target NAME --json --definition -``,
hands it the target's definition on standard input (never as an argument: it may hold a
password, and arguments are visible to everyone on the host), waits at most
:data:`TEST_TIMEOUT` seconds, kills it after that, and reads the report
(:class:`~mercure.core.targettest.TargetTestReport`) from its standard output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from pydantic import ValidationError

from mercure.core.masking import excerpt, register_target_secrets
from mercure.core.targettest import TargetTestReport, TestStep

log = logging.getLogger(__name__)

TEST_TIMEOUT = 30.0
"""Seconds a test may take before it is killed (each step of a plug-in has its own, shorter
limit, so a killed test is rare)."""
MAX_OUTPUT = 1 << 20
MAX_RUNNING = 4
"""Tests running at once in this web interface, at most (each is a process)."""


class _Running:
    """How many tests run now (the web interface serves requests on one event loop)."""

    count = 0


def _failed(name: str, kind: str, summary: str, started: float) -> TargetTestReport:
    return TargetTestReport(
        target=name,
        type=kind,
        ok=False,
        summary=summary,
        steps=[TestStep(name="test", state="failed", detail=summary)],
        seconds=round(time.monotonic() - started, 3),
    )


async def run_target_test(
    name: str, definition: dict[str, Any], *, timeout: float = TEST_TIMEOUT
) -> TargetTestReport:
    """Test the target ``definition`` (``${ENV}`` already expanded) under ``name``."""
    register_target_secrets(definition)  # scrubs what the child says on standard error too
    kind = str(definition.get("type", ""))
    started = time.monotonic()
    if _Running.count >= MAX_RUNNING:
        return _failed(
            name, kind, f"{MAX_RUNNING} tests are running already; try again shortly", started
        )
    _Running.count += 1
    try:
        return await _run(name, definition, kind, started, timeout)
    finally:
        _Running.count -= 1


async def _run(
    name: str, definition: dict[str, Any], kind: str, started: float, timeout: float
) -> TargetTestReport:
    command = [sys.executable, "-m", "mercure", "test-target", name, "--json", "--definition", "-"]
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:
        return _failed(name, kind, f"cannot start mercure test-target: {exc}", started)
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(json.dumps(definition).encode()), timeout
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        return _failed(
            name, kind, f"the test took longer than {timeout:.0f} s and was stopped", started
        )
    try:
        report = TargetTestReport.model_validate_json(stdout[:MAX_OUTPUT])
    except ValidationError:
        said = excerpt(stderr.decode("utf-8", "replace") or stdout.decode("utf-8", "replace"))
        log.warning("mercure test-target %s exited %s without a report", name, process.returncode)
        return _failed(
            name,
            kind,
            f"mercure test-target gave no report (exit {process.returncode}): {said}",
            started,
        )
    # What the person waited for, the start of the command included.
    return report.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
