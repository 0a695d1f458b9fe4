"""Module runners: how a processing module is started, watched, timed out and cleaned up.

Every runner implements the same small interface (:class:`Runner`): run one module over an input
and an output folder, and stop whatever a dead processor left running. ``docker`` talks to the
Docker Engine API; ``command`` starts a local executable in its own process group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mercure.core.config.models import CommandModule, DockerModule

JobRecorder = Callable[[dict[str, Any]], None]
"""Called by a runner with what it must record before and after it starts a module."""


@dataclass
class RunRequest:
    """One module run: what to run, on which folders, and where its log goes."""

    task_id: str
    step: int
    module_name: str
    module: DockerModule | CommandModule
    in_dir: Path
    out_dir: Path
    log_path: Path
    record: JobRecorder = field(default=lambda _record: None)
    persistence_dir: Path | None = None
    """The module's folder kept across tasks (requires_persistence), on this host."""


@dataclass
class RunOutcome:
    """How a module run ended. ``exit_code`` is None when it was killed on timeout."""

    exit_code: int | None
    timed_out: bool = False
    duration: float = 0.0


class Runner(Protocol):
    """What the processor needs from a runner."""

    def run(self, request: RunRequest) -> RunOutcome:
        """Run the module to its end (or its timeout); the log is in ``request.log_path``."""
        ...

    def stop_orphans(self, task_id: str, record: dict[str, Any]) -> None:
        """Stop what a killed processor left running for ``task_id`` (``record`` as recorded)."""
        ...
