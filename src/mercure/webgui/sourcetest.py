"""Testing a retrieve source from the web interface: ``mercure test-source`` as a subprocess.

As for targets (:mod:`mercure.webgui.targettest`): the web interface does not import the
retriever, and a silent PACS must not hold a request, so the command runs as a child with the
definition on standard input and is killed after :data:`TEST_TIMEOUT` seconds.
"""

from __future__ import annotations

import time
from typing import Any

from mercure.core.masking import register_target_secrets
from mercure.core.targettest import TargetTestReport, TestStep
from mercure.webgui.clicheck import CheckFailed, run_check

TEST_TIMEOUT = 40.0
"""Seconds a test may take before it is killed (each of its at most three steps waits at most
10 s, so a killed test is rare)."""


async def run_source_test(
    name: str, definition: dict[str, Any], *, timeout: float = TEST_TIMEOUT
) -> TargetTestReport:
    """Test the source ``definition`` (``${ENV}`` already expanded) under ``name``."""
    register_target_secrets(definition)  # scrubs what the child says on standard error too
    started = time.monotonic()
    try:
        report = await run_check(
            ["test-source", name, "--json", "--definition", "-"],
            definition,
            TargetTestReport,
            timeout=timeout,
        )
    except CheckFailed as exc:
        return TargetTestReport(
            target=name,
            type=str(definition.get("type", "")),
            ok=False,
            summary=str(exc),
            steps=[TestStep(name="test", state="failed", detail=str(exc))],
            seconds=round(time.monotonic() - started, 3),
        )
    return report.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
