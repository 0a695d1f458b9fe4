"""``mercure dispatcher``: takes due tasks from ``outgoing/`` and runs delivery attempts.

Each step starts attempts for as many due tasks as ``dispatch.max_parallel_tasks`` allows:
urgent before normal before offpeak (offpeak only inside the off-peak window), oldest first
within a priority. A task is claimed (a kernel lock, see :mod:`mercure.core.claims`) for the
whole attempt, so two dispatchers never send the same task. Nothing new starts while the
outgoing queue is paused; attempts already running finish.

With ``scale_out.engine: celery`` the service sends nothing itself: it publishes due tasks to
the broker (:mod:`mercure.core.workqueue`), and ``mercure worker`` processes run one attempt
each through :meth:`DispatcherService.dispatch_one`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mercure.core.claims import Claim
from mercure.core.clock import utcnow
from mercure.core.datafolder import Stage
from mercure.core.errors import TaskError
from mercure.core.service import Service
from mercure.core.task import Task, read_task
from mercure.core.workqueue import Feeder, Publisher, WorkItem
from mercure.dispatcher.engine import DeliveryEngine, next_due

log = logging.getLogger(__name__)

PRIORITY_RANK = {"urgent": 0, "normal": 1, "offpeak": 2}


@dataclass(frozen=True, order=True)
class _Candidate:
    rank: int
    task_id: str
    path: Path
    priority: str = "normal"
    attempts: str = ""


class DispatcherService(Service):
    """The dispatcher service (a worker: one step starts due attempts)."""

    name = "dispatcher"
    fast_event_loop = True  # the dicom target's requests are network I/O per instance

    async def setup(self) -> None:
        """Build the engine; tasks half-sent by a killed process are found by the next scan."""
        self.engine = DeliveryEngine(self.data, self.events)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._feeder: Feeder | None = None
        self.wake_on_arrivals(self.data.stage(Stage.OUTGOING))

    async def step(self) -> bool:
        """Start attempts for due tasks while slots are free; False when none was started."""
        if self.config.scale_out.engine != "none":
            return await self._feed()
        if self.data.is_paused(Stage.OUTGOING):
            return False
        free = self.config.dispatch.max_parallel_tasks - len(self._running)
        if free <= 0:
            return False
        candidates, soonest = self._candidates()
        started = 0
        for candidate in candidates:
            if started >= free:
                break
            claim = Claim.try_take(candidate.path)
            if claim is None:
                continue  # another dispatcher has it, or it just moved on
            self._running[candidate.task_id] = asyncio.create_task(
                self._deliver(candidate.task_id, claim)
            )
            started += 1
        if not started and soonest is not None:
            self._wake_at(soonest)
        return started > 0

    def _candidates(self) -> tuple[list[_Candidate], datetime | None]:
        now = utcnow()
        in_window = self.config.offpeak.contains(datetime.now())
        due: list[_Candidate] = []
        soonest: datetime | None = None
        for path in self.data.entries(Stage.OUTGOING):
            if path.name in self._running or not path.is_dir():
                continue
            try:
                task = read_task(path)
            except TaskError:
                due.append(_Candidate(1, path.name, path))  # the engine moves it to error/
                continue
            # No waiting target: a process died between recording the last attempt and moving
            # the task on; the engine finishes that move.
            when = next_due(task, now) if task.dispatch else now
            when = now if when is None else when
            if task.info.priority == "offpeak" and not in_window:
                continue
            if when > now:
                soonest = when if soonest is None else min(soonest, when)
                continue
            rank = PRIORITY_RANK.get(task.info.priority, 1)
            due.append(_Candidate(rank, path.name, path, task.info.priority, _attempts(task)))
        return sorted(due), soonest

    async def _feed(self) -> bool:
        """Scale-out: publish the due tasks (never True: one feed takes them all)."""
        if self._feeder is None or self._feeder.settings != self.config.scale_out:
            if self._feeder is not None:
                self._feeder.publisher.close()
            settings = self.config.scale_out
            self._feeder = Feeder(self.data, "dispatch", Publisher(settings), settings)
        if self.data.is_paused(Stage.OUTGOING):
            self._feeder.forget()
            return False
        candidates, soonest = self._candidates()
        items = [
            WorkItem(c.task_id, "dispatch", "default", c.priority, c.attempts) for c in candidates
        ]
        feeder = self._feeder
        await asyncio.to_thread(feeder.feed, items)
        if feeder.claimed_waiting:
            asyncio.get_running_loop().call_later(0.2, self.wake)
        elif soonest is not None:
            self._wake_at(soonest)
        return False

    async def dispatch_one(self, task_id: str) -> str:
        """One delivery attempt of one task for a scale-out worker; what happened.

        ``skipped`` when another process holds it, it left ``outgoing/`` or is not due (a
        redelivered or duplicate message), ``paused`` when the queue is paused.
        """
        if self.data.is_paused(Stage.OUTGOING):
            return "paused"
        path = self.data.stage(Stage.OUTGOING) / task_id
        claim = Claim.try_take(path)
        if claim is None:
            return "skipped"
        try:
            try:
                task = read_task(path)
                when = next_due(task, utcnow()) if task.dispatch else None
            except TaskError:
                when = None  # the engine moves it to error/ with the reason
            if when is not None and when > utcnow():
                return "skipped"
            # An engine per attempt: its in-process limits are replaced by the shared slots.
            await DeliveryEngine(self.data, self.events).run(claim, self.config)
        finally:
            claim.release()
        return "done"

    def _wake_at(self, moment: datetime) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max((moment - utcnow()).total_seconds(), 0.0) + 0.01
        self._timer = asyncio.get_running_loop().call_later(delay, self.wake)

    async def _deliver(self, task_id: str, claim: Claim) -> None:
        try:
            await self.engine.run(claim, self.config)
        except Exception:  # per-task boundary: the task stays in outgoing/ and is tried again
            log.exception("delivery of task %s failed unexpectedly", task_id)
        finally:
            claim.release()
            del self._running[task_id]
            self.wake()

    async def teardown(self) -> None:
        """Let running attempts finish (a second stop signal cuts this short)."""
        if self._timer is not None:
            self._timer.cancel()
        running = list(getattr(self, "_running", {}).values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)


def _attempts(task: Task) -> str:
    """A key that changes with every attempt: a failed attempt's retry is published anew."""
    if task.dispatch is None:
        return ""
    return ",".join(
        f"{name}:{status.retries}" for name, status in sorted(task.dispatch.status.items())
    )


SERVICE = DispatcherService
