"""The interface every target type implements: send a task's pending instances, and test.

A plug-in reports each instance the target confirmed through :class:`Confirmations` as soon as
it is confirmed, so a crash loses at most the instances in flight; instances the target refused
are returned with the reason. A failure of the link itself is raised (usually as
:class:`~mercure.dispatcher.errors.DeliveryError`, a transient error the engine retries).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    async def test(self) -> str:
        """Check the target can be reached and written to; a one-line success message.

        Raises a :class:`~mercure.core.errors.MercureError` whose message says what failed.
        """
