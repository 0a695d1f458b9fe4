"""Testing a notification channel from the web interface: ``mercure notify-test`` run as a
subprocess, as :mod:`mercure.webgui.targettest` runs ``mercure test-target``.

``python -m mercure notify-test NAME --config PATH --json --definition -`` gets the channel's
definition on standard input (never as an argument: it holds the webhook URL, passwords), a
secret the form left alone as ``<secret>`` (the command puts back the one stored for NAME);
it is killed after :data:`TEST_TIMEOUT` seconds. Its answer is one JSON object
(:class:`NotifyTestReport`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mercure.core.masking import register_channel_secrets, scrub
from mercure.webgui.clicheck import CheckFailed, run_check

TEST_TIMEOUT = 45.0
"""Seconds a test may take before it is killed (a channel's own timeout is 30 s by default)."""


class NotifyTestReport(BaseModel):
    """What ``mercure notify-test --json`` prints."""

    channel: str
    type: str = ""
    ok: bool
    answer: str = ""
    error: str = ""
    seconds: float = 0.0


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
    arguments = ["notify-test", name]
    if config_path is not None:
        arguments += ["--config", str(config_path)]
    arguments += ["--json", "--definition", "-"]
    try:
        report = await run_check(arguments, definition, NotifyTestReport, timeout=timeout)
    except CheckFailed as exc:
        return _failed(name, kind, str(exc), started)
    return report.model_copy(
        update={
            "answer": scrub(report.answer),
            "error": scrub(report.error),
            "seconds": round(time.monotonic() - started, 3),
        }
    )
