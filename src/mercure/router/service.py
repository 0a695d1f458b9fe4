"""``mercure router``: the service frame around :class:`~mercure.router.router.Router`.

The event loop waits for whichever comes first: an inotify event (read in one batch by a
reader callback), the next deadline of a series or study, the periodic rescan, or a stop
signal. Work is done in slices of at most a few tens of milliseconds, so stop signals and
notifications are handled between series, never in the middle of one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar

from mercure.core.config import ConfigSource, LoadedConfig
from mercure.core.datafolder import Stage
from mercure.core.service import Service
from mercure.router.router import Router
from mercure.router.watcher import IncomingWatcher

log = logging.getLogger(__name__)


class RouterService(Service):
    """The router: completes series, applies the rules, hands tasks to the next stage."""

    name: ClassVar[str] = "router"
    idle_wait: ClassVar[float] = 60.0

    def __init__(self, source: ConfigSource, *, instance: str | None = None) -> None:
        super().__init__(source, instance=instance)
        self.watcher: IncomingWatcher | None = None
        self.router = Router(self.data, self.loaded, self.events)

    async def setup(self) -> None:
        """Watch incoming/ first (so nothing that arrives meanwhile is missed), then recover."""
        try:
            self.watcher = IncomingWatcher(self.data.stage(Stage.INCOMING), self.data.retrieve_dir)
        except OSError as exc:
            log.warning("no inotify (%s): relying on the rescan every %g s", exc, self._rescan)
        else:
            self.router.tracker.watcher = self.watcher
            asyncio.get_running_loop().add_reader(self.watcher.fileno(), self._on_notify)
        self.router.start()
        log.info(
            "router ready: %d series waiting, %d studies collecting",
            len(self.router.tracker),
            len(self.router.studies),
        )

    @property
    def _rescan(self) -> float:
        return self.config.router.rescan_interval

    def _on_notify(self) -> None:
        if self.watcher is not None and self.watcher.dispatch(self.router):
            self._wake.set()

    async def serve(self) -> None:
        """Route what is due, then sleep until the next deadline or notification."""
        while not self.stopping.is_set():
            self.check_config()
            if self.router.run_due():
                await asyncio.sleep(0)  # let notifications and signals in between slices
                continue
            delay = self.router.next_wakeup() - time.time()
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            waiters = [
                asyncio.ensure_future(self._wake.wait()),
                asyncio.ensure_future(self.stopping.wait()),
            ]
            await asyncio.wait(
                waiters, timeout=min(delay, self.idle_wait), return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters:
                waiter.cancel()

    def status_detail(self) -> str:
        """Series held back by retrieve jobs that have not ended, for ``mercure status``."""
        waiting = self.router.waiting_for_retrieve()
        return ", ".join(
            f"{count} series waiting for retrieve job {job}"
            for job, count in sorted(waiting.items())
        )

    def on_config(self, loaded: LoadedConfig) -> None:
        """Apply a changed configuration between series."""
        self.router.set_config(loaded)

    async def teardown(self) -> None:
        """Stop watching."""
        if self.watcher is not None:
            asyncio.get_running_loop().remove_reader(self.watcher.fileno())
            self.watcher.close()
            self.watcher = None


SERVICE = RouterService
