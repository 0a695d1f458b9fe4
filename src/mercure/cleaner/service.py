"""The ``cleaner`` service: a cleaning pass every ``cleaner.interval`` seconds.

At start-up it finishes the removals a crash interrupted. Each pass runs in a worker thread so
that heartbeats and stop signals are served while large tasks are deleted; a first stop signal
ends the pass after the task being removed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mercure.cleaner.cleaner import Cleaner, Clock, local_now
from mercure.cleaner.diskusage import UsageProbe
from mercure.core.config import ConfigSource
from mercure.core.service import Service

log = logging.getLogger(__name__)


class CleanerService(Service):
    """Applies retention in the cleaning window and relieves disk pressure at any time."""

    name = "cleaner"
    idle_wait = 1.0
    """How often the service checks whether a pass is due (passes are ``cleaner.interval``)."""

    def __init__(
        self,
        source: ConfigSource,
        *,
        instance: str | None = None,
        clock: Clock = local_now,
        probe: UsageProbe | None = None,
    ) -> None:
        super().__init__(source, instance=instance)
        self.cleaner = Cleaner(self.data, self.events, clock=clock, probe=probe)
        self._next_pass = 0.0

    async def setup(self) -> None:
        """Finish removals that a crash interrupted, before anything else."""
        finished = await asyncio.to_thread(self.cleaner.finish_leftovers)
        if finished:
            log.info("finished %d interrupted removals", len(finished))

    async def step(self) -> bool:
        """Run a pass when one is due; never reports more work (passes are periodic)."""
        if time.monotonic() < self._next_pass:
            return False
        config = self.config
        report = await asyncio.to_thread(
            self.cleaner.run_pass, config, should_stop=self.stopping.is_set
        )
        self._next_pass = time.monotonic() + config.cleaner.interval
        if report.removals:
            log.info(
                "pass removed %d tasks; disk usage %.1f%% -> %.1f%%",
                len(report.removals),
                report.usage_before.percent,
                report.usage_after.percent,
            )
        return False


SERVICE = CleanerService
