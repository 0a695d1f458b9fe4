"""The receiver as several processes on one port: the parent that keeps them running.

One event loop uses one core; with ``receiver.processes`` above 1, ``mercure receiver`` becomes a
small parent that starts that many receiver processes and restarts any that dies, using the
supervisor's own child handling (restart with backoff, parent-death signal, ordered stop). The
parent opens every listener's socket and the children inherit them; a child that serves no
association takes the next connection first (:class:`~mercure.dicomnet.server.SharedAcceptor`),
so associations spread one per process as long as there are idle processes. See
docs/receiver.md for why that and not ``SO_REUSEPORT``.

The parent is the receiver as far as anyone outside sees it: `mercure run` and systemd start
and stop one process, and `mercure status` shows its heartbeat (``receiver@<instance>``) with
the children's pids. Each child is a full receiver with its own instance name
(``<instance>:<n>``), hence its own staging folder, event outbox and heartbeat file. Children
reload the configuration themselves; the parent follows ``receiver.processes`` and the listeners'
addresses (a changed address: it opens the new socket, then replaces the children).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from mercure.core.clock import utcnow
from mercure.core.config import ConfigSource
from mercure.core.config.models import ListenerConfig
from mercure.core.events import EventClient
from mercure.core.heartbeat import Heartbeat, write_heartbeat
from mercure.receiver.listeners import (
    LISTEN_RETRY_SECONDS,
    ListenerError,
    bind_host,
    cannot_listen,
    report_cannot_open,
)
from mercure.supervisor.supervisor import ChildSpec, Supervisor

log = logging.getLogger(__name__)

PROCESS_ENV = "MERCURE_RECEIVER_PROCESS"
"""Set in each child to its number (1-based): it serves on the sockets it inherits."""

SOCKETS_ENV = "MERCURE_RECEIVER_SOCKETS"
"""Set in each child: the inherited listening sockets, ``{"host|port": [fd, ...]}``."""

LISTEN_BACKLOG = 128

STOW_PROCESS = 1
"""The child that serves the STOW-RS endpoint (an HTTP server on its own port)."""


def child_index() -> int | None:
    """This process's number among the receiver's children, or None when it is no child."""
    value = os.environ.get(PROCESS_ENV)
    return int(value) if value else None


def child_instance(instance: str, index: int) -> str:
    """The instance name of child ``index``: distinct outbox, staging and heartbeat names."""
    return f"{instance}:{index}"


def address_key(listener: ListenerConfig) -> str:
    """How a listener's address is named between the parent and its children."""
    return f"{listener.host}|{listener.port}"


def inherited_sockets() -> dict[str, tuple[socket.socket, ...]]:
    """In a child: the listening sockets the parent opened, by :func:`address_key`."""
    value = os.environ.get(SOCKETS_ENV)
    if not value:
        return {}
    return {
        key: tuple(socket.socket(fileno=fd) for fd in fds) for key, fds in json.loads(value).items()
    }


def open_listening_sockets(listener: ListenerConfig) -> list[socket.socket]:
    """Bind and listen on a listener's address (every address family for the wildcard host),
    as the single-process receiver would; ListenerError when that fails."""
    host = bind_host(listener)
    opened: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            opened.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in opened:
            sock.close()
        raise cannot_listen(listener, exc) from exc
    return opened


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
        self._sockets: dict[str, list[socket.socket]] = {}
        self._move_error: str | None = None
        """Why the listeners' new addresses could not be opened, while they cannot."""
        self._move_retry_at = 0.0

    def _open(self, listeners: list[ListenerConfig]) -> None:
        """Open the sockets of addresses not open yet; close those no listener has any more."""
        wanted = {address_key(listener): listener for listener in listeners}
        opened: dict[str, list[socket.socket]] = {}
        try:
            for key, listener in wanted.items():
                if key not in self._sockets:
                    opened[key] = open_listening_sockets(listener)
        except ListenerError:
            for socks in opened.values():
                for sock in socks:
                    sock.close()
            raise
        for key in set(self._sockets) - set(wanted):
            for sock in self._sockets.pop(key):
                sock.close()
        self._sockets.update(opened)

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
        fds = {key: [sock.fileno() for sock in socks] for key, socks in self._sockets.items()}
        env = {**os.environ, PROCESS_ENV: str(index), SOCKETS_ENV: json.dumps(fds)}
        passed = tuple(fd for group in fds.values() for fd in group)
        return ChildSpec(f"receiver:{index}", argv, env=env, pass_fds=passed)

    def run(self) -> int:
        """Run the children until SIGTERM/SIGINT; the exit code."""
        config = self.source.current.config
        count = config.receiver.process_count()
        try:
            self._open(config.receiver.listeners)
        except ListenerError as exc:
            log.error("%s", exc)
            self.events.emit("listener.failed", severity="error", message=str(exc))
            return 1
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
            for socks in self._sockets.values():
                for sock in socks:
                    sock.close()

    def _tick(self, supervisor: Supervisor) -> None:
        loaded = self.source.poll()
        if loaded is not None:
            self._move(supervisor, loaded.config.receiver.listeners)
            self._resize(supervisor, loaded.config.receiver.process_count())
        elif self._move_error is not None and time.monotonic() >= self._move_retry_at:
            self._move(supervisor, self.source.current.config.receiver.listeners)
        self._beat(supervisor, "running")

    def _move(self, supervisor: Supervisor, listeners: list[ListenerConfig]) -> None:
        """Listener addresses changed: open the new sockets, then replace every child (each
        lets its associations finish first, as at a stop)."""
        if {address_key(listener) for listener in listeners} == set(self._sockets):
            self._move_error = None
            return
        try:
            self._open(listeners)
        except ListenerError as exc:
            # As with one process: the moved listener stays closed (the others serve on) and
            # is tried again until it opens or the configuration changes.
            self._move_retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
            self._move_error = report_cannot_open(exc, self._move_error, self.events)
            return
        if self._move_error is not None:
            log.info("the listeners' new addresses are open now, on a later try")
            self._move_error = None
        log.info("receiver listeners moved: restarting the receiver processes")
        count = len(supervisor.children)
        supervisor.replace_all([self._spec(index) for index in range(1, count + 1)])

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
