"""Testing a notification channel from the web interface: ``mercure notify-test`` run as a
subprocess, as :mod:`mercure.webgui.targettest` runs ``mercure test-target``.

``python -m mercure notify-test NAME --config PATH --json --definition -`` gets the channel's
definition on standard input (never as an argument: it holds the webhook URL, passwords), a
secret the form left alone as ``<secret>`` (the command puts back the one stored for NAME);
it is killed after :data:`TEST_TIMEOUT` seconds. Its answer is one JSON object
(:class:`NotifyTestReport`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from mercure.core.masking import excerpt, register_secret, scrub

log = logging.getLogger(__name__)

TEST_TIMEOUT = 45.0
"""Seconds a test may take before it is killed (a channel's own timeout is 30 s by default)."""
MAX_OUTPUT = 1 << 20
MAX_RUNNING = 4
"""Tests running at once in this web interface, at most (each is a process)."""


class NotifyTestReport(BaseModel):
    """What ``mercure notify-test --json`` prints."""

    channel: str
    type: str = ""
    ok: bool
    answer: str = ""
    error: str = ""
    seconds: float = 0.0


class _Running:
    count = 0


def _register(node: Any) -> None:
    """Mask every string of the definition's secret fields in what this process logs."""
    if isinstance(node, SecretStr):
        node = node.get_secret_value()
    if isinstance(node, str):
        if node and node != "<secret>":
            register_secret(node)
    elif isinstance(node, dict):
        for value in node.values():
            _register(value)
    elif isinstance(node, list):
        for value in node:
            _register(value)


def register_channel_secrets(definition: dict[str, Any]) -> None:
    """Register the secrets of a channel definition (URL, headers, password, HMAC, URLs)."""
    for key in ("url", "urls", "headers", "password", "hmac_secret"):
        _register(definition.get(key))


def _failed(name: str, kind: str, error: str, started: float) -> NotifyTestReport:
    return NotifyTestReport(
        channel=name,
        type=kind,
        ok=False,
        error=error,
        seconds=round(time.monotonic() - started, 3),
    )


async def run_notify_test(
    name: str,
    definition: dict[str, Any],
    config_path: Path | None,
    *,
    timeout: float = TEST_TIMEOUT,
) -> NotifyTestReport:
    """Send the test notification through ``definition`` (``${ENV}`` expanded) as ``name``."""
    register_channel_secrets(definition)
    kind = str(definition.get("type", ""))
    started = time.monotonic()
    if _Running.count >= MAX_RUNNING:
        return _failed(
            name, kind, f"{MAX_RUNNING} tests are running already; try again shortly", started
        )
    _Running.count += 1
    try:
        return await _run(name, definition, config_path, kind, started, timeout)
    finally:
        _Running.count -= 1


async def _run(
    name: str,
    definition: dict[str, Any],
    config_path: Path | None,
    kind: str,
    started: float,
    timeout: float,
) -> NotifyTestReport:
    command = [sys.executable, "-m", "mercure", "notify-test", name]
    if config_path is not None:
        command += ["--config", str(config_path)]
    command += ["--json", "--definition", "-"]
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:
        return _failed(name, kind, f"cannot start mercure notify-test: {exc}", started)
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
        report = NotifyTestReport.model_validate_json(stdout[:MAX_OUTPUT].strip() or b"{}")
    except ValidationError:
        said = excerpt(stderr.decode("utf-8", "replace") or stdout.decode("utf-8", "replace"))
        log.warning("mercure notify-test %s exited %s without a report", name, process.returncode)
        return _failed(
            name,
            kind,
            f"mercure notify-test gave no report (exit {process.returncode}): {scrub(said)}",
            started,
        )
    return report.model_copy(
        update={
            "answer": scrub(report.answer),
            "error": scrub(report.error),
            "seconds": round(time.monotonic() - started, 3),
        }
    )
