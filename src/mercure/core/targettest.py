"""The report of a target's connection test: what ``mercure test-target --json`` prints.

A test is a series of steps (resolve the host, connect, TLS handshake, log in, C-ECHO ...),
each ``ok``, ``failed``, ``warning`` (it worked, but something deserves a look: an SFTP host
key that is not verified) or ``skipped`` (not applicable: no TLS configured). The first failed
step ends the test. The report crosses a process boundary (the web interface runs the
command and reads the JSON), so it is a model here in core, used by both sides.

Every text in a report has been scrubbed of secrets (:mod:`mercure.core.masking`) by the
process that made it.
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import BaseModel, Field

StepState = Literal["ok", "failed", "warning", "skipped"]


class TestStep(BaseModel):
    """One step of a test: what was tried, how it went, and a detail (what answered, or why)."""

    __test__ = False  # not a pytest class

    name: str
    state: StepState
    detail: str = ""


class TargetTestReport(BaseModel):
    """The outcome of testing one target: its steps, whether all went well, and one line."""

    __test__ = False

    target: str
    type: str = ""
    ok: bool
    summary: str = Field(description="The success message, or what failed and where.")
    steps: list[TestStep] = Field(default_factory=list)
    seconds: float = 0.0


STATE_MARKS: dict[str, str] = {
    "ok": "ok",
    "failed": "FAILED",
    "warning": "warning",
    "skipped": "skipped",
}
"""How each step state is printed in a terminal (a failure stands out)."""


def failed_report(name: str, message: str) -> TargetTestReport:
    """The report of a test that could not start (no such target or source, bad definition)."""
    return TargetTestReport(
        target=name,
        ok=False,
        summary=message,
        steps=[TestStep(name="configuration", state="failed", detail=message)],
    )


def print_report(name: str, report: TargetTestReport, *, as_json: bool) -> int:
    """Print a test report (``mercure test-target`` / ``test-source``); the exit code."""
    if as_json:
        print(report.model_dump_json())
        return 0 if report.ok else 1
    for step in report.steps:
        detail = f": {step.detail}" if step.detail else ""
        print(f"  {STATE_MARKS[step.state]:8} {step.name}{detail}")
    if report.ok:
        print(f"{name}: OK: {report.summary}")
        return 0
    print(f"{name}: FAILED: {report.summary}", file=sys.stderr)
    return 1
