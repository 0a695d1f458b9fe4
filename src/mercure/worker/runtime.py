"""What a ``mercure worker`` process does with one message: run that task's stage, once.

The worker holds a processor and a dispatcher object (made by name through the supervisor's
registry, as the supervisor does; services never import each other) and calls their
one-task entry points, which take the task's claim exactly as the services do. The message
only says *which* task; everything else is read from the shared data folder. A message for a
task that is claimed elsewhere or has moved on is acknowledged and skipped, so a redelivery
never processes a task twice to completion.

The worker writes a heartbeat ``run/worker@<instance>.json`` naming the tasks it runs (what
``mercure status`` lists for every host), and one ``worker.task`` event per message with its
host, instance, outcome and the time the message waited in the broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mercure.core.clock import utcnow
from mercure.core.config import ConfigSource
from mercure.core.datafolder import DataFolder
from mercure.core.delivery import OutboxDeliverer
from mercure.core.events import EventClient, Outbox
from mercure.core.heartbeat import Heartbeat, State, write_heartbeat
from mercure.core.logs import log_context
from mercure.core.workqueue import STAGE_FOLDERS, WorkStage
from mercure.supervisor.registry import service_class

if TYPE_CHECKING:
    from mercure.dispatcher.service import DispatcherService
    from mercure.processor.service import ProcessorService

log = logging.getLogger(__name__)


def valid_task_id(task_id: object) -> bool:
    """A message comes from the network: only a plain folder name is a task id."""
    return (
        isinstance(task_id, str)
        and 0 < len(task_id) <= 255
        and "/" not in task_id
        and "\0" not in task_id
        and not task_id.startswith(".")
    )


class WorkerRuntime:
    """The state of one worker process: its stage objects, heartbeat and events."""

    def __init__(self, source: ConfigSource, instance: str, stages: Iterable[WorkStage]) -> None:
        self.source = source
        self.instance = instance
        self.host = socket.gethostname()
        self.stages = tuple(stages)
        config = source.current.config
        self.data = DataFolder(config.data_dir)
        self.data.ensure()
        self.outbox = Outbox(
            self.data.outbox_dir,
            f"worker@{instance}",
            max_bytes=config.events.outbox_max_mb << 20,
            fsync=config.events.fsync,
        )
        self.events = EventClient(self.outbox, "worker", instance)
        self.deliverer = OutboxDeliverer.from_config(self.events, config)
        self.processor: ProcessorService | None = None
        self.dispatcher: DispatcherService | None = None
        if "processing" in self.stages:
            self.processor = service_class("processor")(source, instance=instance)  # type: ignore[assignment]
            # Its task may run next on another host, which cannot stop a module left here.
            self.processor.modules_die_with_process = True  # type: ignore[union-attr]
        if "dispatch" in self.stages:
            self.dispatcher = service_class("dispatcher")(source, instance=instance)  # type: ignore[assignment]
        self._current: dict[str, str] = {}
        self._lock = threading.Lock()
        self._state: State = "starting"
        self._started_at = utcnow()
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Recover half-done hand-overs, start event delivery and the heartbeat."""
        for service in (self.processor, self.dispatcher):
            if service is not None:
                service.deliverer.start()
        self.deliverer.start()
        if self.processor is not None:
            self.processor.recover_hand_overs()
            self.processor.remove_orphaned_containers()
        self._state = "running"
        self._beater = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        self._beater.start()
        self.events.emit(
            "service.boot",
            message=f"worker {self.instance} started on {self.host} (pid {os.getpid()}) "
            f"for {', '.join(self.stages)}",
            host=self.host,
            stages=list(self.stages),
        )

    def stop(self, exit_code: int) -> None:
        """Write the last heartbeat and events; called once Celery returned."""
        self._stop_beating.set()
        if self._beater is not None:
            self._beater.join(5.0)
        self._state = "stopped"
        self._beat()
        self.events.emit("service.stop", message="worker stopped", exit_code=exit_code)
        # Each deliverer makes a last attempt of up to two seconds: all at once, not in turn.
        services = [s for s in (self.processor, self.dispatcher) if s is not None]
        stoppers = [
            threading.Thread(target=deliverer.stop)
            for deliverer in [self.deliverer, *(s.deliverer for s in services)]
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for outbox in [self.outbox, *(s.outbox for s in services)]:
            outbox.close()

    # --- one message ---------------------------------------------------------------------
    def run(self, task_id: object, stage: object, published_at: object) -> str:
        """Run one message's task; the outcome (``done``, ``skipped``, ``paused``, ...)."""
        started = time.time()
        if not valid_task_id(task_id) or stage not in STAGE_FOLDERS:
            log.error("a message with no valid task id or stage was dropped: %.80r", task_id)
            return "invalid"
        assert isinstance(task_id, str) and isinstance(stage, str)
        self.source.poll()  # a changed configuration applies from the next task
        with self._lock:
            self._current[task_id] = stage
        try:
            with log_context(task_id=task_id):
                outcome = self._run_stage(task_id, stage)
        except Exception:  # per-task boundary: the task stays; reconciliation republishes it
            log.exception("task %s: unexpected error in %s", task_id, stage)
            outcome = "failed"
        finally:
            with self._lock:
                self._current.pop(task_id, None)
        waited = started - published_at if isinstance(published_at, int | float) else None
        data: dict[str, Any] = {"host": self.host, "work_stage": stage, "outcome": outcome}
        if waited is not None:
            data["queue_wait_ms"] = round(max(waited, 0.0) * 1000, 3)
            data["published_at"] = published_at
            data["started_at"] = started
        self.events.emit(
            "worker.task",
            task_id=task_id,
            message=f"{stage} of task {task_id} on {self.host}/{self.instance}: {outcome}",
            **data,
        )
        return outcome

    def _run_stage(self, task_id: str, stage: str) -> str:
        if stage == "processing":
            if self.processor is None:
                return "not-served"
            return self.processor.process_one(task_id)
        if self.dispatcher is None:
            return "not-served"
        return asyncio.run(self.dispatcher.dispatch_one(task_id))

    # --- heartbeat -----------------------------------------------------------------------
    def current(self) -> str:
        """The tasks running now, for the heartbeat's detail."""
        with self._lock:
            running = sorted(self._current.items())
        if not running:
            return "idle"
        return ", ".join(f"{stage} {task_id}" for task_id, stage in running)

    def _beat(self) -> None:
        config = self.source.current.config
        write_heartbeat(
            self.data.run_dir,
            Heartbeat(
                service="worker",
                instance=self.instance,
                host=self.host,
                pid=os.getpid(),
                state=self._state,
                started_at=self._started_at,
                time=utcnow(),
                interval=config.supervisor.heartbeat_interval,
                detail=self.current() if self._state == "running" else "",
            ),
        )

    def _beat_loop(self) -> None:
        while True:
            self._beat()
            interval = self.source.current.config.supervisor.heartbeat_interval
            if self._stop_beating.wait(interval):
                return
