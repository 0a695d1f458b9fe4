"""The supervisor: child processes, restarts with backoff, and a clean stop.

It waits for signals instead of polling: SIGCHLD says a child exited, SIGTERM/SIGINT say stop,
and a timeout wakes it for due restarts and its own heartbeat. Children run in their own
process group (so a Ctrl-C in the terminal reaches only the supervisor, which then stops them in
order) and get SIGTERM from the kernel if the supervisor itself dies, so none is left orphaned.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


@dataclass
class ChildSpec:
    """A child process to keep running."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    stop_last: bool = False
    """Stopped after every other child (the bookkeeper, so it receives their last events)."""
    pass_fds: tuple[int, ...] = ()
    """Descriptors the child inherits (the receiver's shared listening sockets)."""


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_start_at: float = 0.0
    failures: int = 0
    restarts: int = 0
    history: list[int] = field(default_factory=list)


def _child_setup() -> None:
    # Runs in the child between fork and exec.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
    os.setpgid(0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Supervisor:
    """Keeps a set of child processes running until told to stop."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        stable_after: float = 60.0,
        stop_timeout: float = 30.0,
        tick: float = 5.0,
        on_tick: Callable[[Supervisor], None] | None = None,
        on_exit: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.children = {spec.name: _Child(spec) for spec in specs}
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.tick = tick
        self.on_tick = on_tick
        self.on_exit = on_exit
        self._stop_requested = False

    def pids(self) -> dict[str, int | None]:
        """The current process id of each child (None while it waits for a restart)."""
        return {
            name: (child.process.pid if child.process and child.process.poll() is None else None)
            for name, child in self.children.items()
        }

    def add(self, spec: ChildSpec) -> None:
        """Start one more child (call from ``on_tick``, i.e. inside :meth:`run`)."""
        child = _Child(spec)
        self.children[spec.name] = child
        self._start(child)

    def remove(self, name: str) -> None:
        """Stop one child as :meth:`run` stops all (SIGTERM, then kill after the stop timeout)
        and forget it (call from ``on_tick``)."""
        child = self.children.pop(name)
        self._stop_group([child], time.monotonic() + self.stop_timeout)

    def replace_all(self, specs: list[ChildSpec]) -> None:
        """Stop every child as :meth:`run` stops all, then start ``specs`` instead (call from
        ``on_tick``)."""
        group = list(self.children.values())
        self.children = {}
        self._stop_group(group, time.monotonic() + self.stop_timeout)
        for spec in specs:
            self.add(spec)

    def run(self) -> int:
        """Start the children and supervise them until SIGTERM or SIGINT; the exit code."""
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        try:
            for child in self.children.values():
                self._start(child)
            while True:
                if self.on_tick:
                    self.on_tick(self)
                if self._stop_requested:  # arrived while remove() waited for a child
                    log.info("supervisor: stop requested, stopping services")
                    self._stop_all()
                    return 0
                info = signal.sigtimedwait(_WATCHED, self._wait_time())
                if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    log.info(
                        "supervisor: %s received, stopping services",
                        signal.Signals(info.si_signo).name,
                    )
                    self._stop_all()
                    return 0
                if info is not None and info.si_signo == signal.SIGHUP:
                    log.info("supervisor: SIGHUP ignored (services reload their config themselves)")
                self._reap()
                self._start_due()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)

    def _wait_time(self) -> float:
        now = time.monotonic()
        due = [c.next_start_at - now for c in self.children.values() if c.process is None]
        return max(0.01, min([self.tick, *due]))

    def _start(self, child: _Child) -> None:
        log.info("supervisor: starting %s", child.spec.name)
        try:
            child.process = subprocess.Popen(
                list(child.spec.argv),
                env=child.spec.env,
                preexec_fn=_child_setup,
                pass_fds=child.spec.pass_fds,
            )
        except OSError as exc:
            log.error("supervisor: cannot start %s: %s", child.spec.name, exc)
            self._schedule_restart(child, -1)
            return
        child.started_at = time.monotonic()

    def _reap(self) -> None:
        for child in self.children.values():
            if child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            child.history.append(code)
            self._schedule_restart(child, code)

    def _schedule_restart(self, child: _Child, code: int) -> None:
        ran_for = time.monotonic() - child.started_at if child.process else 0.0
        child.process = None
        child.failures = 1 if ran_for >= self.stable_after else child.failures + 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (child.failures - 1))
        child.next_start_at = time.monotonic() + delay
        child.restarts += 1
        log.warning(
            "supervisor: %s exited with code %d after %.1f s; restarting in %.1f s",
            child.spec.name,
            code,
            ran_for,
            delay,
        )
        if self.on_exit:
            self.on_exit(child.spec.name, code, delay)

    def _start_due(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.process is None and child.next_start_at <= now:
                self._start(child)

    def _stop_all(self) -> None:
        first = [c for c in self.children.values() if not c.spec.stop_last]
        last = [c for c in self.children.values() if c.spec.stop_last]
        hurried = False
        for group in (first, last):
            deadline = 0.0 if hurried else time.monotonic() + self.stop_timeout
            hurried = self._stop_group(group, deadline) == 0.0

    def _stop_group(self, group: list[_Child], deadline: float) -> float:
        """SIGTERM a group and wait for it (until ``deadline``); the deadline still in force."""
        running = [c.process for c in group if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            remaining = deadline - time.monotonic()
            while process.poll() is None and remaining > 0:
                # A second Ctrl-C / SIGTERM while waiting means: stop now.
                info = signal.sigtimedwait(_WATCHED, min(remaining, 0.5))
                if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    deadline = 0.0
                    self._stop_requested = True
                remaining = deadline - time.monotonic()
            if process.poll() is None:
                log.warning("supervisor: pid %d did not stop in time, killing it", process.pid)
                process.kill()
                process.wait()
        return deadline
