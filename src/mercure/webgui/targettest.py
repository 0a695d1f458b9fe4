"""Testing a target from the web interface: ``mercure test-target`` run as a subprocess.

The web interface does not import the dispatcher (services import core only), and a test may
hang on a silent peer: so it runs ``python -m mercure test-target NAME --json --definition -``,
hands it the target's definition on standard input, waits at most :data:`TEST_TIMEOUT`
seconds, and reads the report (:class:`~mercure.core.targettest.TargetTestReport`) from its
standard output (:mod:`mercure.webgui.clicheck`).
"""

from __future__ import annotations

import time
from typing import Any

from mercure.core.masking import register_target_secrets
from mercure.core.targettest import TargetTestReport, TestStep
from mercure.webgui.clicheck import CheckFailed, run_check

TEST_TIMEOUT = 30.0
"""Seconds a test may take before it is killed (each step of a plug-in has its own, shorter
limit, so a killed test is rare)."""


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
    arguments = ["test-target", name, "--json", "--definition", "-"]
    try:
        report = await run_check(arguments, definition, TargetTestReport, timeout=timeout)
    except CheckFailed as exc:
        return _failed(name, kind, str(exc), started)
    # What the person waited for, the start of the command included.
    return report.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
