"""The service frame: one base class owns the loop, signals, heartbeat, config reload and events.

A service implements only its unit of work. Two shapes are supported:

- a *worker* implements :meth:`Service.step` (do one unit of work, return whether there was
  any); the frame calls it in a loop, sleeps on :meth:`Service.wake` when idle, and reloads the
  configuration between units;
- a *server* overrides :meth:`Service.serve` (e.g. an asyncio DICOM listener) and returns once
  :attr:`Service.stopping` is set; the frame still reloads the configuration in the background.

Stopping follows rq/dramatiq: the first SIGTERM or SIGINT lets the current unit finish and then
stops; the second stops now (the running coroutine is cancelled, and if the process has not
exited a few seconds later it is ended hard; every stage is crash-safe, so that is allowed).
The SIGTERM a service gets when its supervisor dies (parent-death signal) never counts as that
second signal: the unit still finishes, within the supervisor's ``stop_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from mercure.core.clock import utcnow
from mercure.core.config import ConfigSource, LoadedConfig, MercureConfig
from mercure.core.datafolder import DataFolder
from mercure.core.delivery import OutboxDeliverer
from mercure.core.events import EventClient, Outbox
from mercure.core.heartbeat import Heartbeat, State, write_heartbeat
from mercure.core.inotify import IN_CREATE, IN_MOVED_TO, IN_ONLYDIR, Inotify
from mercure.core.logs import log_context

log = logging.getLogger(__name__)

HARD_STOP_GRACE = 5.0
"""Seconds between the second stop signal and a hard exit, if cancelling did not end it."""


class Service:
    """Base class of the services. Subclasses set :attr:`name` and override a hook."""

    name: ClassVar[str] = "service"
    idle_wait: ClassVar[float] = 5.0
    """Longest sleep between steps when idle; :meth:`wake` cuts it short."""
    fast_event_loop: ClassVar[bool] = False
    """Run on uvloop (libuv) where installed: less CPU per I/O event, for services whose hot
    path is network I/O (the receiver)."""

    def __init__(self, source: ConfigSource, *, instance: str | None = None) -> None:
        self.source = source
        self.instance = instance or socket.gethostname()
        self.data = DataFolder(self.config.data_dir)
        self.data.ensure()
        self.outbox = Outbox(
            self.data.outbox_dir,
            f"{self.name}@{self.instance}",
            max_bytes=self.config.events.outbox_max_mb << 20,
            fsync=self.config.events.fsync,
        )
        self.events = EventClient(self.outbox, self.name, self.instance)
        self.deliverer = OutboxDeliverer.from_config(self.events, self.config)
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._signals = 0
        self._parent_pid = os.getppid()
        self._orphaned = False
        self._started_at = utcnow()
        self._state: State = "starting"
        self._watchers: list[Inotify] = []

    @property
    def loaded(self) -> LoadedConfig:
        """The current validated configuration with its compiled rules."""
        return self.source.current

    @property
    def config(self) -> MercureConfig:
        """The current configuration."""
        return self.source.current.config

    # --- hooks for subclasses ------------------------------------------------------------
    async def setup(self) -> None:
        """Prepare before the first unit (recovery of half-done work goes here)."""

    async def step(self) -> bool:
        """Do one unit of work; return False when there was nothing to do."""
        raise NotImplementedError(f"{type(self).__name__} must override step() or serve()")

    async def serve(self) -> None:
        """Run until :attr:`stopping` is set. The default is the worker loop around step()."""
        while not self.stopping.is_set():
            self.check_config()
            # Cleared before the step, not after it: a wake while the step runs (work that
            # arrived after it looked) must end the idle wait, or that work waits it out.
            self._wake.clear()
            if await self.step():
                continue
            waiters = [
                asyncio.ensure_future(self._wake.wait()),
                asyncio.ensure_future(self.stopping.wait()),
            ]
            await asyncio.wait(waiters, timeout=self.idle_wait, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def teardown(self) -> None:
        """Release resources after serving (runs on every exit, including errors)."""

    def on_config(self, loaded: LoadedConfig) -> None:
        """Called after a changed configuration file was loaded successfully."""

    # --- frame ---------------------------------------------------------------------------
    def wake(self) -> None:
        """End an idle wait now; safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def wake_on_arrivals(self, folder: Path) -> None:
        """Wake the worker loop as soon as an entry is created in or moved into ``folder``.

        Call from ``setup()``. Uses inotify; the idle wait stays as the safety net (and is all
        there is where inotify is not available).
        """
        loop = asyncio.get_running_loop()
        try:
            watcher = Inotify()
            watcher.add_watch(folder, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)
        except OSError as exc:
            log.warning("no file-system notifications for %s (%s): polling only", folder, exc)
            return

        def arrived() -> None:
            if watcher.read_events():
                self._wake.set()

        loop.add_reader(watcher.fileno(), arrived)
        self._watchers.append(watcher)

    def request_stop(self) -> None:
        """Finish the current unit of work, then stop; safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stopping.set)

    def check_config(self) -> bool:
        """Reload the configuration if its file changed; True when a new one is in force."""
        loaded = self.source.poll()
        if loaded is None:
            return False
        self.events.emit("config.reloaded", message=f"configuration reloaded from {loaded.path}")
        for rule, reason in loaded.rule_errors.items():
            self.events.emit(
                "rule.error",
                severity="error",
                message=f"rule {rule} does not compile: {reason}",
                rule=rule,
                reason=reason,
            )
        self.deliverer.apply_config(loaded.config)
        self.on_config(loaded)
        return True

    def run(self) -> int:
        """Run the service until stopped; the process exit code."""
        with (
            log_context(service=self.name),
            asyncio.Runner(loop_factory=self._loop_factory()) as runner,
        ):
            return runner.run(self._run())

    def _loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        if not self.fast_event_loop:
            return None
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; %s runs on asyncio's own event loop", self.name)
            return None
        return uvloop.new_event_loop

    async def _run(self) -> int:
        self._loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._on_signal, signum)
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        # Workers reload between steps; server-shaped services have no steps, so poll for them.
        is_worker = type(self).serve is Service.serve
        reloader = asyncio.create_task(self._config_loop()) if not is_worker else None
        self.deliverer.start()
        self.events.emit("service.boot", message=f"{self.name} started (pid {os.getpid()})")
        log.info("%s starting (pid %d)", self.name, os.getpid())
        code = 0
        try:
            await self.setup()
            self._state = "running"
            self._beat()
            self._main = asyncio.create_task(self.serve())
            await self._main
        except asyncio.CancelledError:
            log.warning("%s stopped immediately on a second stop signal", self.name)
            code = 130
        except Exception as exc:
            log.exception("%s crashed", self.name)
            self.events.emit(
                "service.crash", severity="critical", message=f"{type(exc).__name__}: {exc}"
            )
            code = 1
        finally:
            self._state = "stopping"
            heartbeat.cancel()
            if reloader is not None:
                reloader.cancel()
            await self.teardown()
            for inotify in self._watchers:
                self._loop.remove_reader(inotify.fileno())
                inotify.close()
            self._state = "stopped"
            self._beat()
            self.events.emit("service.stop", message=f"{self.name} stopped", exit_code=code)
            self.deliverer.stop()
            self.outbox.close()
        log.info("%s stopped", self.name)
        return code

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGTERM and self._parent_lost():
            # The parent-death signal the supervisor asked for (PR_SET_PDEATHSIG): the
            # supervisor is gone, which is no reason to abandon the unit in progress, even if
            # it had asked for a stop already. Nobody will end this process hard any more,
            # so it does that itself after the supervisor's stop timeout.
            log.warning("%s: parent process gone, finishing current work", self.name)
            timer = threading.Timer(self.config.supervisor.stop_timeout, os._exit, args=(130,))
            timer.daemon = True
            timer.start()
            if self._signals:
                return
        self._signals += 1
        if self._signals == 1:
            name = signal.Signals(signum).name
            log.info("%s: %s received, finishing current work", self.name, name)
            self.stopping.set()
            self._state = "stopping"
            self._beat()
            return
        log.warning("%s: second stop signal, stopping now", self.name)
        if self._main is not None:
            self._main.cancel()
        timer = threading.Timer(HARD_STOP_GRACE, os._exit, args=(130,))
        timer.daemon = True
        timer.start()

    def _parent_lost(self) -> bool:
        """True once, when the parent this process started under has died."""
        if self._orphaned or os.getppid() == self._parent_pid:
            return False
        self._orphaned = True
        return True

    def _beat(self, detail: str = "") -> None:
        write_heartbeat(
            self.data.run_dir,
            Heartbeat(
                service=self.name,
                instance=self.instance,
                host=socket.gethostname(),
                pid=os.getpid(),
                state=self._state,
                started_at=self._started_at,
                time=utcnow(),
                interval=self.config.supervisor.heartbeat_interval,
                detail=detail,
            ),
        )

    def status_detail(self) -> str:
        """A short line for ``mercure status`` beside the heartbeat (none by default)."""
        return ""

    async def _heartbeat_loop(self) -> None:
        while True:
            self._beat(self.status_detail())
            await asyncio.sleep(self.config.supervisor.heartbeat_interval)

    async def _config_loop(self) -> None:
        # Server-shaped services never pass through the worker loop; reload for them here.
        while True:
            await asyncio.sleep(1.0)
            self.check_config()
