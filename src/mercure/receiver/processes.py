"""The receiver as several processes on one port: the parent that keeps them running.

One event loop uses one core; with ``receiver.processes`` above 1, ``mercure receiver`` becomes a
small parent that starts that many receiver processes and restarts any that dies, using the
supervisor's own child handling (restart with backoff, parent-death signal, ordered stop). Each
child binds every listener with ``SO_REUSEPORT`` and the kernel spreads new connections over
them; see docs/receiver.md for why that and not one shared socket.

The parent is the receiver as far as anyone outside sees it: `mercure run` and systemd start
and stop one process, and `mercure status` shows its heartbeat (``receiver@<instance>``) with
the children's pids. Each child is a full receiver with its own instance name
(``<instance>:<n>``), hence its own staging folder, event outbox and heartbeat file. Children
reload the configuration themselves; the parent only follows ``receiver.processes``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from mercure.core.clock import utcnow
from mercure.core.config import ConfigSource
from mercure.core.events import EventClient
from mercure.core.heartbeat import Heartbeat, write_heartbeat
from mercure.supervisor.supervisor import ChildSpec, Supervisor

log = logging.getLogger(__name__)

PROCESS_ENV = "MERCURE_RECEIVER_PROCESS"
"""Set in each child to its number (1-based): it serves, and binds with SO_REUSEPORT."""

STOW_PROCESS = 1
"""The child that serves the STOW-RS endpoint (an HTTP server on its own port)."""


def child_index() -> int | None:
    """This process's number among the receiver's children, or None when it is no child."""
    value = os.environ.get(PROCESS_ENV)
    return int(value) if value else None


def child_instance(instance: str, index: int) -> str:
    """The instance name of child ``index``: distinct outbox, staging and heartbeat names."""
    return f"{instance}:{index}"


class ReceiverParent:
    """Starts ``receiver.processes`` receivers, keeps them running, and stops them."""

    def __init__(
        self, source: ConfigSource, instance: str, events: EventClient, run_dir: Path
    ) -> None:
        self.source = source
        self.instance = instance
        self.events = events
        self.run_dir = run_dir
        self.started_at = utcnow()

    def _spec(self, index: int) -> ChildSpec:
        argv = [
            sys.executable,
            "-m",
            "mercure",
            "receiver",
            "--config",
            str(self.source.current.path),
            "--instance",
            child_instance(self.instance, index),
        ]
        return ChildSpec(f"receiver:{index}", argv, env={**os.environ, PROCESS_ENV: str(index)})

    def run(self) -> int:
        """Run the children until SIGTERM/SIGINT; the exit code."""
        config = self.source.current.config
        count = config.receiver.process_count()
        supervisor = Supervisor(
            [self._spec(index) for index in range(1, count + 1)],
            backoff_max=config.supervisor.restart_backoff_max,
            stop_timeout=config.supervisor.stop_timeout,
            tick=min(1.0, config.supervisor.heartbeat_interval),
            on_tick=self._tick,
            on_exit=self._exited,
        )
        log.info("receiver: %d processes", count)
        try:
            return supervisor.run()
        finally:
            self._beat(supervisor, "stopped")

    def _tick(self, supervisor: Supervisor) -> None:
        loaded = self.source.poll()
        if loaded is not None:
            self._resize(supervisor, loaded.config.receiver.process_count())
        self._beat(supervisor, "running")

    def _resize(self, supervisor: Supervisor, count: int) -> None:
        running = len(supervisor.children)
        if count == running:
            return
        log.info("receiver.processes changed: %d -> %d processes", running, count)
        for index in range(running + 1, count + 1):
            supervisor.add(self._spec(index))
        for index in range(running, count, -1):
            supervisor.remove(f"receiver:{index}")

    def _exited(self, name: str, code: int, delay: float) -> None:
        self.events.emit(
            "service.exited",
            severity="error",
            message=f"{name} exited with code {code}; restarting in {delay:.0f} s",
            child=name,
            exit_code=code,
        )

    def _beat(self, supervisor: Supervisor, state: str) -> None:
        pids = supervisor.pids()
        up = sum(pid is not None for pid in pids.values())
        write_heartbeat(
            self.run_dir,
            Heartbeat(
                service="receiver",
                instance=self.instance,
                host=socket.gethostname(),
                pid=os.getpid(),
                state="stopped" if state == "stopped" else "running",
                started_at=self.started_at,
                time=utcnow(),
                interval=self.source.current.config.supervisor.heartbeat_interval,
                detail=f"{up}/{len(pids)} processes: "
                + " ".join(str(pid or "-") for pid in pids.values()),
            ),
        )
