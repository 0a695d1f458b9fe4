"""The ``notifier`` service: sends the notifications queued in ``data_dir/notifications``.

Why a service of its own rather than a step of the router, processor or dispatcher:

- Peers are slow or dead at times (an SMTP relay that hangs, a chat service that rate-limits).
  A send that waits its full ``timeout``, or a day of retries, must never hold up routing,
  processing or dispatching; the other services only write a small file and go on.
- It restarts alone: a crash in a sender (or apprise, a large third-party library) costs
  nothing but a restart of this process, and the queue on disk is where it left it.
- The queue has one owner. Only this process reads the files, rewrites them after a failed
  attempt and removes them; an exclusive lock on ``notifications/.lock`` (held as long as the
  process lives, released by the kernel when it dies, so never stale) makes a second notifier
  on the same data folder wait instead of sending everything twice.

The loop wakes on new files (inotify) and rescans when idle; it takes due files oldest first
and runs up to ``notifier.max_parallel`` attempts at once, each bounded by its channel's
``timeout``. :mod:`.delivery` says what is recorded.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from datetime import datetime

from mercure.core.clock import utcnow
from mercure.core.config import ConfigSource
from mercure.core.errors import TaskError
from mercure.core.notifications.queue import queued, read_notification
from mercure.core.service import Service
from mercure.notifier.delivery import attempt, due_time, quarantine

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
LOCK_POLL = 1.0
"""Seconds between tries of a notifier waiting for another one's lock."""


class NotifierService(Service):
    """Sends queued notifications, at most ``notifier.max_parallel`` at a time."""

    name = "notifier"
    idle_wait = 30.0
    """Safety-net rescan; new files wake the loop at once, due retries by a timer."""

    def __init__(self, source: ConfigSource, *, instance: str | None = None) -> None:
        super().__init__(source, instance=instance)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        """Attempts in progress by file name."""
        self._due: dict[str, datetime] = {}
        """When each queued file is due, as read once (this process alone rewrites them)."""
        self._timer: asyncio.TimerHandle | None = None
        self._lock_fd: int | None = None

    async def setup(self) -> None:
        """Take the data folder's notifier lock (waiting for it if need be), watch the queue."""
        await self._lock()
        self.wake_on_arrivals(self.data.notifications_dir)

    async def _lock(self) -> None:
        path = self.data.notifications_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    log.warning(
                        "another notifier holds %s; waiting for it to stop (one notifier per "
                        "data folder)",
                        path,
                    )
                    said = True
                if self.stopping.is_set():
                    os.close(fd)
                    return
                await asyncio.sleep(LOCK_POLL)
        if said:
            log.info("took over %s", path)
        self._lock_fd = fd

    async def step(self) -> bool:
        """Start the due notifications there is room for; never reports more work (the
        loop is woken when an attempt ends, a file arrives or a retry is due)."""
        if self._lock_fd is None:
            return False
        limit = self.config.notifier.max_parallel
        now = utcnow()
        paths = queued(self.data)
        present = {path.name for path in paths}
        for name in list(self._due):
            if name not in present:
                del self._due[name]
        # Every file's due time (read once, then cached), so that the due ones start in the
        # order they fell due: a notification that keeps failing and falling due again must
        # not hold the slots while others, queued later, never get their first attempt.
        soonest: datetime | None = None
        ready: list[tuple[datetime, str]] = []
        for path in paths:
            if path.name in self._inflight:
                continue
            due = self._due.get(path.name)
            if due is None:
                try:
                    due = due_time(read_notification(path))
                except FileNotFoundError:
                    continue
                except TaskError as exc:
                    quarantine(self.data, path, str(exc), self.events)
                    continue
                self._due[path.name] = due
            if due > now:
                soonest = due if soonest is None else min(soonest, due)
            else:
                ready.append((due, path.name))
        ready.sort()
        for _, name in ready[: max(0, limit - len(self._inflight))]:
            self._inflight[name] = asyncio.create_task(self._attempt(name))
        if soonest is not None:
            self._wake_at(soonest)
        return False

    def _wake_at(self, when: datetime) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (when - utcnow()).total_seconds())
        self._timer = asyncio.get_running_loop().call_later(delay, self.wake)

    async def _attempt(self, name: str) -> None:
        path = self.data.notifications_dir / name
        try:
            try:
                notification = read_notification(path)
            except FileNotFoundError:
                self._due.pop(name, None)
                return
            except TaskError as exc:
                self._due.pop(name, None)
                quarantine(self.data, path, str(exc), self.events)
                return
            next_at = await attempt(path, notification, self.config, self.events)
            if next_at is None:
                self._due.pop(name, None)
            else:
                self._due[name] = next_at
        except Exception:
            # Recording failed (disk full?): leave the file as it is and retry it later.
            log.exception("notification %s: recording the attempt failed", name)
        finally:
            del self._inflight[name]
            self.wake()

    async def teardown(self) -> None:
        """Let the attempts in progress end (each within its timeout), release the lock."""
        if self._timer is not None:
            self._timer.cancel()
        inflight = list(self._inflight.values())
        if inflight:
            log.info("waiting for %d notifications being sent", len(inflight))
            await asyncio.gather(*inflight, return_exceptions=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


SERVICE = NotifierService
