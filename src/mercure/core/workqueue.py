"""The work queue of scale-out: task ids published to a Celery broker, consumed by workers.

With ``scale_out.engine: celery`` the processor and dispatcher stop running tasks themselves:
they *feed* the broker. Each task that waits in ``processing/`` or ``outgoing/`` (and is due,
unclaimed, not paused, inside the off-peak window if it is offpeak) is published once as a
message holding only its id, stage, queue and priority; the data stays in the shared data folder.
``mercure worker`` processes on any host consume the messages and run the existing processor or
dispatcher code for that one task under its claim (docs/scale-out.md).

Why a feeder beside the stage folders rather than a hook wherever a task enters a stage: tasks
enter those folders from many places (router, processor hand-over, requeue, the web interface,
retrieve jobs, an administrator's ``mv``), and the folder is the truth. The feeder is woken by
inotify like the services were, so publication costs one rename-to-message latency, and the same
scan is the reconciliation that finds messages the broker lost.

Priorities are broker priorities, not separate queues: a worker serving several queues takes
from them round-robin, so a separate urgent queue would only get its share, while a priority
queue hands out an urgent message before any waiting normal one (RabbitMQ ``x-max-priority``;
Redis through kombu's priority lists, checked in order).

Celery is imported only here and in :mod:`mercure.worker`, and only when scale-out is on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mercure.core.claims import Claim
from mercure.core.config.models import ScaleOutConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import TransientError

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Queue

log = logging.getLogger(__name__)

WorkStage = Literal["processing", "dispatch"]
STAGE_FOLDERS: dict[WorkStage, Stage] = {
    "processing": Stage.PROCESSING,
    "dispatch": Stage.OUTGOING,
}
TASK_NAME = "mercure.work"
"""The one Celery task: its arguments are a :class:`WorkItem`'s fields."""

MAX_PRIORITY = 9
_AMQP_PRIORITY = {"urgent": 9, "normal": 5, "offpeak": 0}
# kombu's Redis transport serves priority 0 first: the scale is reversed.
_REDIS_PRIORITY = {"urgent": 0, "normal": 5, "offpeak": 9}


@dataclass(frozen=True)
class WorkItem:
    """One task waiting in a stage, as published. ``key`` changes when the task needs another
    message (a dispatch task after a failed attempt): the same key is published once."""

    task_id: str
    stage: WorkStage
    queue: str = "default"
    priority: str = "normal"
    key: str = ""


def queue_name(settings: ScaleOutConfig, stage: WorkStage, queue: str) -> str:
    """The broker's queue of a stage and capability: ``mercure.processing.gpu``."""
    return f"{settings.queue_prefix}.{stage}.{queue}"


def broker_priority(settings: ScaleOutConfig, priority: str) -> int:
    """The message priority of a task priority on this broker."""
    table = _REDIS_PRIORITY if _is_redis(settings) else _AMQP_PRIORITY
    return table.get(priority, table["normal"])


def _is_redis(settings: ScaleOutConfig) -> bool:
    return (settings.broker or "").lower().startswith(("redis", "rediss"))


def kombu_queue(settings: ScaleOutConfig, name: str) -> Queue:
    """A queue declared the same way by publishers and workers (priorities on RabbitMQ)."""
    from kombu import Queue

    return Queue(name, routing_key=name, max_priority=MAX_PRIORITY)


def celery_app(settings: ScaleOutConfig, *, name: str = "mercure") -> Celery:
    """A Celery application for the configured broker: late acknowledgement, prefetch 1."""
    from celery import Celery

    app = Celery(
        name, broker=settings.broker, backend=settings.result_backend, set_as_current=False
    )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=settings.result_backend is None,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3.0,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "queue_order_strategy": "priority",
            "sep": ":",
        },
        task_default_queue=queue_name(settings, "processing", "default"),
        task_create_missing_queues=False,
        accept_content=["json"],
        task_serializer="json",
    )
    return app


class Publisher:
    """Publishes work items to the broker; one per feeding process."""

    def __init__(self, settings: ScaleOutConfig) -> None:
        self.settings = settings
        self.app = celery_app(settings)
        self._queues: dict[str, Queue] = {}

    def _queue(self, stage: WorkStage, queue: str) -> Queue:
        name = queue_name(self.settings, stage, queue)
        if name not in self._queues:
            self._queues[name] = kombu_queue(self.settings, name)
        return self._queues[name]

    def publish(self, item: WorkItem) -> None:
        """Send one message; :class:`TransientError` if the broker cannot take it now."""
        queue = self._queue(item.stage, item.queue)
        try:
            self.app.send_task(
                TASK_NAME,
                kwargs={
                    "task_id": item.task_id,
                    "stage": item.stage,
                    "queue": item.queue,
                    "priority": item.priority,
                    "published_at": time.time(),
                },
                queue=queue,
                routing_key=queue.routing_key,
                declare=[queue],
                priority=broker_priority(self.settings, item.priority),
                retry=False,
                ignore_result=True,
            )
        except Exception as exc:  # kombu raises its own and socket errors: all mean "not now"
            raise TransientError(f"broker unreachable: {type(exc).__name__}") from exc

    def depth(self, stage: WorkStage, queue: str) -> int | None:
        """Messages waiting in a queue (not those a worker holds); None if unknown now."""
        kqueue = self._queue(stage, queue)
        try:
            with self.app.connection_for_write() as connection:
                # Declared, not passively: Redis knows no empty queue, and declaring again
                # with the same arguments changes nothing on RabbitMQ.
                declared = kqueue.bind(connection.default_channel).queue_declare()
                return int(declared.message_count)
        except Exception as exc:  # the broker is down: reconcile later
            log.warning("cannot read the depth of a work queue: %s", type(exc).__name__)
            return None

    def close(self) -> None:
        """Close the broker connections."""
        self.app.close()


class Feeder:
    """Publishes a stage's waiting tasks once each, and republishes lost ones.

    ``feed`` is called with the items that are ready now (the service decides what is ready:
    due, not paused, inside the off-peak window). A claimed item is not published: a service
    is handing it over or a worker runs it. Every ``reconcile_interval`` an item published
    longer ago than that, still waiting and unclaimed while its queue is empty, lost its
    message (dropped by a broker restart, purged, or never sent) and is published again. A
    message that turns out to be a duplicate is harmless: the worker finds the task claimed
    or gone and skips it.
    """

    def __init__(
        self, data: DataFolder, stage: WorkStage, publisher: Publisher, settings: ScaleOutConfig
    ) -> None:
        self.data = data
        self.stage = stage
        self.publisher = publisher
        self.settings = settings
        self._published: dict[str, tuple[str, float]] = {}
        self._next_reconcile = time.monotonic() + settings.reconcile_interval
        self.claimed_waiting = False
        """Whether the last feed saw ready tasks still claimed (the caller looks again soon)."""
        self.reconciled = False
        """Whether the last feed was a reconciliation (the caller recovers its stage too)."""

    def forget(self) -> None:
        """Publish everything again from the next feed (the queue was paused)."""
        self._published.clear()

    def feed(self, items: list[WorkItem]) -> int:
        """Publish the ready items not published yet; the number published."""
        now = time.monotonic()
        reconcile = now >= self._next_reconcile
        if reconcile:
            self._next_reconcile = now + self.settings.reconcile_interval
        self.reconciled = reconcile
        folder = self.data.stage(STAGE_FOLDERS[self.stage])
        ready_ids = {item.task_id for item in items}
        for gone in set(self._published) - ready_ids:
            del self._published[gone]
        empty_queues: dict[str, bool] = {}
        published = 0
        self.claimed_waiting = False
        for item in items:
            previous = self._published.get(item.task_id)
            if previous is not None and previous[0] == item.key:
                if not reconcile or now - previous[1] < self.settings.reconcile_interval:
                    continue
                if item.queue not in empty_queues:
                    empty_queues[item.queue] = self.publisher.depth(self.stage, item.queue) == 0
                if not empty_queues[item.queue]:
                    continue
            if Claim.is_claimed(folder / item.task_id):
                self.claimed_waiting = True
                continue
            try:
                self.publisher.publish(item)
            except TransientError as exc:
                log.warning("%s: cannot publish tasks now (%s); retrying later", self.stage, exc)
                break
            if previous is not None and previous[0] == item.key:
                log.info("task %s: its message was lost; published again", item.task_id)
            self._published[item.task_id] = (item.key, now)
            published += 1
        return published

    def status(self) -> dict[str, Any]:
        """What ``mercure status`` may show of the feeder."""
        return {"published_waiting": len(self._published)}
