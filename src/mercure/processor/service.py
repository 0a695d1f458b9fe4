"""``mercure processor``: takes tasks from ``processing/`` and runs their modules.

Scheduling: up to ``processing.max_parallel`` jobs at once, urgent tasks first, then normal, then
offpeak ones (only inside the off-peak window), oldest first within a priority. Nothing new is
started while the processing queue is paused. Each job runs in a worker thread holding the task's
claim; the first stop signal lets running jobs finish.

With ``scale_out.engine: celery`` the service runs no job: it publishes the waiting tasks in
the same order to the broker (:mod:`mercure.core.workqueue`), and ``mercure worker`` processes
run them through :meth:`ProcessorService.process_one`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from mercure.core.claims import Claim
from mercure.core.config import ConfigSource
from mercure.core.config.models import DockerModule
from mercure.core.datafolder import Stage
from mercure.core.errors import TaskError, TransientError
from mercure.core.logs import log_context
from mercure.core.notifications.triggers import notify_safely
from mercure.core.service import Service
from mercure.core.task import read_task
from mercure.core.workqueue import Feeder, Publisher, WorkItem
from mercure.processor import workspace
from mercure.processor.job import JobContext, report_complete, run_job
from mercure.processor.runners import Runner
from mercure.processor.runners.command import CommandRunner
from mercure.processor.runners.docker import DockerRunner

log = logging.getLogger(__name__)

PRIORITY_RANK = {"urgent": 0, "normal": 1, "offpeak": 2}
RETRY_DELAY = 30.0
"""Seconds before a task whose job hit a transient error (Docker API down) is tried again."""


class ProcessorService(Service):
    """The processor service."""

    name: ClassVar[str] = "processor"
    idle_wait: ClassVar[float] = 0.5

    def __init__(self, source: ConfigSource, *, instance: str | None = None) -> None:
        super().__init__(source, instance=instance)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._docker: DockerRunner | None = None
        self._pause_noted = False
        self._feeder: Feeder | None = None
        self.modules_die_with_process = False
        """Command modules are killed when this process dies (set by ``mercure worker``)."""

    def _runners(self) -> dict[str, Runner]:
        if self._docker is None or self._docker.config != self.config.processing:
            if self._docker is not None and not self._running:
                self._docker.close()  # running jobs may still use the old connection
            self._docker = DockerRunner(self.config.processing, self.instance)
        return {
            "command": CommandRunner(die_with_parent=self.modules_die_with_process),
            "docker": self._docker,
        }

    def _uses_docker(self) -> bool:
        return any(isinstance(m, DockerModule) for m in self.config.modules.values())

    async def setup(self) -> None:
        """Finish half-done hand-overs and remove containers this instance left running."""
        self.wake_on_arrivals(self.data.stage(Stage.PROCESSING))
        self.recover_hand_overs()
        await asyncio.to_thread(self.remove_orphaned_containers)

    def remove_orphaned_containers(self) -> None:
        """Remove the module containers a killed run of this instance left (docker modules)."""
        if not self._uses_docker():
            return
        try:
            runner = self._runners()["docker"]
            assert isinstance(runner, DockerRunner)
            runner.stop_instance_orphans()
        except TransientError as exc:
            log.warning("cannot look for orphaned containers: %s", exc)

    def recover_hand_overs(self) -> None:
        """Finish hand-overs a killed processor (or scale-out worker) left half done."""
        for task_id in workspace.recover_stage(self.data):
            log.info("task %s: finished a hand-over interrupted by a crash", task_id)
            self._report_recovered(task_id)

    def _report_recovered(self, task_id: str) -> None:
        # The crash came before the job could report: the bookkeeper learns it from here. The
        # task may have moved on already, so its stage comes from the document, as in hand_over.
        for stage in (Stage.OUTGOING, Stage.SUCCESS):
            folder = self.data.stage(stage) / task_id
            try:
                task = read_task(folder)
                handed_to = workspace.destination_of(folder)
            except TaskError:
                continue
            report_complete(self.events, task, self.data.stage(handed_to) / task_id)
            if handed_to is Stage.SUCCESS:
                # After the move this time: a repeated notification rather than a lost one.
                notify_safely(
                    self.data, self.config, task, "completion", task_dir=folder, events=self.events
                )
            return
        log.warning("task %s: recovered, but moved on before its processing was reported", task_id)

    async def step(self) -> bool:
        """Start one job if there is room and a task waiting; True if one was started."""
        if self.config.scale_out.engine != "none":
            return await self._feed()
        if self.data.is_paused(Stage.PROCESSING):
            if not self._pause_noted:
                self._pause_noted = True
                waiting = len(self.data.entries(Stage.PROCESSING)) - len(self._running)
                self.events.emit(
                    "processor.paused",
                    message=f"processing queue paused; {waiting} tasks waiting",
                    waiting=waiting,
                )
            return False
        self._pause_noted = False
        if len(self._running) >= self.config.processing.max_parallel:
            return False
        for task_dir in self._candidates():
            claim = Claim.try_take(task_dir)
            if claim is None:
                continue
            job = asyncio.create_task(self._job(task_dir, claim))
            self._running[task_dir.name] = job
            return True
        return False

    async def _feed(self) -> bool:
        """Scale-out: publish the tasks that are ready (never True: one feed takes them all)."""
        if self._feeder is None or self._feeder.settings != self.config.scale_out:
            if self._feeder is not None:
                self._feeder.publisher.close()
            settings = self.config.scale_out
            self._feeder = Feeder(self.data, "processing", Publisher(settings), settings)
        if self.data.is_paused(Stage.PROCESSING):
            self._feeder.forget()
            return False
        modules = self.config.modules
        items = []
        for task_dir in self._candidates():
            try:
                task = read_task(task_dir)
                process, priority = task.process, task.info.priority
            except TaskError:
                process, priority = [], "normal"  # the worker's job fails it with the reason
            module = modules.get(process[0].module_name) if process else None
            queue = module.queue if module is not None else "default"
            items.append(WorkItem(task_dir.name, "processing", queue, priority))
        feeder = self._feeder
        await asyncio.to_thread(feeder.feed, items)
        if feeder.claimed_waiting:
            # A task moved in while its producer still held it: look again soon.
            asyncio.get_running_loop().call_later(0.2, self.wake)
        if feeder.reconciled:
            await asyncio.to_thread(self.recover_hand_overs)
        return False

    def process_one(self, task_id: str) -> str:
        """Run the job of one task for a scale-out worker; what happened, for its log.

        ``skipped`` when another process holds the task or it left ``processing/`` (a
        redelivered or duplicate message: never processed twice to completion), ``paused``
        when the queue is paused (the feeder publishes it again on resume).
        """
        task_dir = self.data.stage(Stage.PROCESSING) / task_id
        if self.data.is_paused(Stage.PROCESSING):
            return "paused"
        claim = Claim.try_take(task_dir)
        if claim is None:
            return "skipped"
        context = JobContext(
            data=self.data,
            modules=dict(self.config.modules),
            runners=self._runners(),
            events=self.events,
            instance=self.instance,
            config=self.config,
        )
        try:
            with log_context(task_id=task_id):
                run_job(context, task_dir)
        except TransientError as exc:
            # Left in processing/: the feeder's reconciliation publishes it again.
            log.warning("task %s: %s; it stays in processing/", task_id, exc)
            return "transient"
        finally:
            claim.release()
        return "done"

    def _candidates(self) -> list[Path]:
        now = time.monotonic()
        offpeak_open = self.config.offpeak.contains(datetime.now().astimezone())
        ranked = []
        for task_dir in self.data.entries(Stage.PROCESSING):
            if task_dir.name in self._running or self._retry_at.get(task_dir.name, 0) > now:
                continue
            try:
                priority = read_task(task_dir).info.priority
            except TaskError:
                priority = "normal"  # the job fails it with the reason
            if priority == "offpeak" and not offpeak_open:
                continue
            ranked.append((PRIORITY_RANK[priority], task_dir.name, task_dir))
        return [task_dir for _rank, _name, task_dir in sorted(ranked)]

    async def _job(self, task_dir: Path, claim: Claim) -> None:
        context = JobContext(
            data=self.data,
            modules=dict(self.config.modules),
            runners=self._runners(),
            events=self.events,
            instance=self.instance,
            config=self.config,
        )
        try:
            with log_context(task_id=task_dir.name):
                await asyncio.to_thread(run_job, context, task_dir)
            self._retry_at.pop(task_dir.name, None)
        except TransientError as exc:
            log.warning("task %s: %s; trying again in %g s", task_dir.name, exc, RETRY_DELAY)
            self._retry_at[task_dir.name] = time.monotonic() + RETRY_DELAY
        except Exception:
            # A bug must not take the service down with other jobs running; the task stays.
            log.exception("task %s: unexpected error", task_dir.name)
            self._retry_at[task_dir.name] = time.monotonic() + RETRY_DELAY
        finally:
            claim.release()
            del self._running[task_dir.name]
            self.wake()

    async def teardown(self) -> None:
        """Let running jobs finish (a second stop signal cancels the wait)."""
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._docker is not None:
            self._docker.close()


SERVICE = ProcessorService
