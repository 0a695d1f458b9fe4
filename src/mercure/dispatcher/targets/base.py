"""The interface every target type implements: send a task's pending instances, and test.

A plug-in reports each instance the target confirmed through :class:`Confirmations` as soon as
it is confirmed, so a crash loses at most the instances in flight; instances the target refused
are returned with the reason. A failure of the link itself is raised (usually as
:class:`~mercure.dispatcher.errors.DeliveryError`, a transient error the engine retries).
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from mercure.core.masking import scrub
from mercure.core.targettest import StepState, TestStep
from mercure.core.task import TaskInfo

Confirm = Callable[[Path, int], None]
"""Called with (file, bytes sent) for every instance the target confirmed; thread-safe."""


@dataclass(frozen=True)
class SendJob:
    """What one attempt sends to one target."""

    task_id: str
    task_dir: Path
    info: TaskInfo
    files: Sequence[Path]
    """Instances not yet confirmed by this target, in send order (may be empty)."""
    total_files: int
    """All instances of the task, including those confirmed by earlier attempts."""


@dataclass
class SendResult:
    """What an attempt achieved beyond the confirmed instances: the refused ones, by file."""

    rejected: dict[Path, str] = field(default_factory=dict)


class TestSteps:
    """The steps of one connection test, recorded as a plug-in goes (every detail scrubbed).

    A plug-in calls :meth:`ok`, :meth:`warning` or :meth:`skipped` after each step, and
    :meth:`fail` for the step that failed, which raises the error that ends the test.
    """

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.steps: list[TestStep] = []

    def _add(self, name: str, state: StepState, detail: str) -> None:
        self.steps.append(TestStep(name=name, state=state, detail=scrub(detail)))

    def ok(self, name: str, detail: str = "") -> None:
        """The step ``name`` worked."""
        self._add(name, "ok", detail)

    def warning(self, name: str, detail: str) -> None:
        """The step ``name`` worked, but ``detail`` deserves a look."""
        self._add(name, "warning", detail)

    def skipped(self, name: str, detail: str) -> None:
        """The step ``name`` does not apply (``detail`` says why)."""
        self._add(name, "skipped", detail)

    def fail(self, name: str, error: Exception) -> NoReturn:
        """Record that ``name`` failed with ``error`` (its message) and raise ``error``."""
        self._add(name, "failed", str(error))
        raise error

    @property
    def failed(self) -> bool:
        """Whether a step failed."""
        return any(step.state == "failed" for step in self.steps)


class TargetPlugin(abc.ABC):
    """One configured target. Instances are cheap; they hold no connection between calls."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Send ``job.files``; call ``confirm`` per confirmed instance; return the refused ones.

        When nothing was refused, the target must now hold every instance of the task (earlier
        attempts' included), so plug-ins that mark a finished upload (``.complete``) do it here.
        """

    @abc.abstractmethod
    async def test(self, steps: TestSteps) -> str:
        """Check the target can be reached and written to; a one-line success message.

        Records each step in ``steps``; the step that fails is recorded with
        :meth:`TestSteps.fail`, which raises a :class:`~mercure.core.errors.MercureError`
        whose message says what failed.
        """


def left_out(files: Sequence[Path], file_filter: str) -> tuple[list[Path], list[Path]]:
    """``files`` split by a target's ``file_filter`` (comma-separated glob patterns of file
    names not to send, mercure's meaning): (the files to send, the files left out)."""
    patterns = [part.strip() for part in file_filter.split(",") if part.strip()]
    send: list[Path] = []
    skip: list[Path] = []
    for path in files:
        matched = any(fnmatch.fnmatchcase(path.name, pattern) for pattern in patterns)
        (skip if matched else send).append(path)
    return send, skip
