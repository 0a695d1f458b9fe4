"""The delivery engine: one attempt at every due target of a task, in parallel.

An attempt sends only the instances a target has not confirmed yet (the progress journal, see
:mod:`mercure.dispatcher.progress`), records the outcome per target in ``task.json`` and then
moves the task: to ``success/`` when every target has everything, to ``error/`` (with
``fail_stage`` ``dispatch`` and the reasons) when a target has used its last attempt and the
others are finished, otherwise it stays in ``outgoing/`` until the next target is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from mercure.core.claims import Claim
from mercure.core.clock import utcnow
from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import DataFolder, Stage, is_visible
from mercure.core.errors import MercureError, PermanentError, TaskError
from mercure.core.events import EventClient
from mercure.core.notifications.triggers import notify_safely
from mercure.core.retry import RetryPolicy
from mercure.core.targetslots import target_slot
from mercure.core.task import (
    TargetStatus,
    Task,
    event_uids,
    fail_and_report,
    move_task,
    read_task,
    write_task,
)
from mercure.dispatcher.progress import ProgressJournal
from mercure.dispatcher.targets import SendJob, SendResult, build_target

log = logging.getLogger(__name__)

FAIL_STAGE = "dispatch"
MAX_LISTED_REJECTIONS = 50
"""A reason lists at most this many refused instances (and says how many more)."""


def task_files(task_dir: Path) -> list[Path]:
    """The DICOM files of a task, in name order (temporary dot-names excluded)."""
    # Names sorted as strings and file types from the directory entries (no stat per file):
    # a task may hold thousands of instances.
    with os.scandir(task_dir) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.name.endswith(".dcm") and is_visible(entry.name) and entry.is_file()
        )
    return [task_dir / name for name in names]


def due_targets(task: Task, now: datetime) -> list[str]:
    """Targets of the task that wait for an attempt that is due now."""
    if task.dispatch is None:
        return []
    due = []
    for name in task.dispatch.target_name:
        status = task.dispatch.status.get(name)
        if status is None or (
            status.state == "waiting"
            and (status.next_retry_at is None or status.next_retry_at <= now)
        ):
            due.append(name)
    return due


def next_due(task: Task, now: datetime) -> datetime | None:
    """When the earliest waiting target of the task is due (``now`` if one is due already)."""
    if task.dispatch is None:
        return None
    times = []
    for name in task.dispatch.target_name:
        status = task.dispatch.status.get(name)
        if status is None:
            times.append(now)
        elif status.state == "waiting":
            times.append(status.next_retry_at or now)
    return min(times, default=None)


@dataclass
class _Attempt:
    """Counters of one attempt at one target."""

    instances: int = 0
    size: int = 0


class DeliveryEngine:
    """Runs attempts; holds the per-target concurrency limits across tasks."""

    def __init__(
        self, data: DataFolder, events: EventClient, rng: random.Random | None = None
    ) -> None:
        self.data = data
        self.events = events
        # One generator for the process: retry delays drawn from it are spread (seeded in tests).
        self.rng = rng or random.Random()
        self._limits: dict[tuple[str, int], asyncio.Semaphore] = {}

    def _limit(self, target: str, size: int) -> asyncio.Semaphore:
        # Keyed with the size so that a changed limit in the configuration takes effect.
        key = (target, size)
        if key not in self._limits:
            self._limits[key] = asyncio.Semaphore(size)
        return self._limits[key]

    def _shared_slot(
        self, target: str, size: int, config: MercureConfig
    ) -> contextlib.AbstractAsyncContextManager[object]:
        # Scale-out: workers on other hosts send too, so the limit is kept in the data folder.
        if config.scale_out.engine == "none":
            return contextlib.nullcontext()
        return target_slot(self.data.run_dir, target, size)

    async def run(self, claim: Claim, config: MercureConfig) -> Path:
        """One attempt at each due target of the claimed task; returns where the task is now."""
        task_dir = claim.path
        try:
            task = read_task(task_dir)
        except TaskError as exc:
            return self._fail(claim, config, str(exc))
        if task.dispatch is None or not task.dispatch.target_name:
            return self._fail(
                claim, config, "the task names no dispatch target (dispatch.target_name)"
            )
        files = task_files(task_dir)
        journal = ProgressJournal(task_dir)
        try:
            confirmed = journal.confirmed()
            now = utcnow()
            due = due_targets(task, now)
            await asyncio.gather(
                *(
                    self._attempt(task, name, files, confirmed.get(name, {}), journal, config)
                    for name in due
                )
            )
        finally:
            journal.close()
        statuses = [task.dispatch.status[n] for n in task.dispatch.target_name]
        waiting = [s.next_retry_at for s in statuses if s.state == "waiting"]
        task.dispatch.retries = max((s.retries for s in statuses), default=0)
        task.dispatch.next_retry_at = min((t for t in waiting if t is not None), default=None)
        write_task(task_dir, task)
        if all(s.state == "complete" for s in statuses):
            # Reported before the move: once in success/, nothing would report it again.
            series_uid, study_uid = event_uids(task)
            self.events.emit(
                "task.completed",
                task_id=task.id,
                series_uid=series_uid,
                study_uid=study_uid,
                message="delivered to " + ", ".join(task.dispatch.target_name),
                task=task.model_dump(mode="json"),
                stage=Stage.SUCCESS.value,
            )
            notify_safely(
                self.data, config, task, "completion", task_dir=task_dir, events=self.events
            )
            destination = move_task(task_dir, self.data, Stage.SUCCESS)
            claim.moved_to(destination)
            log.info("task %s delivered to %s", task.id, ", ".join(task.dispatch.target_name))
            return destination
        if not waiting:
            reasons = "; ".join(
                f"{name}: {task.dispatch.status[name].reason}"
                for name in task.dispatch.target_name
                if task.dispatch.status[name].state == "error"
            )
            return self._fail(claim, config, reasons)
        # Still waiting for a retry: the bookkeeper records the per-target status as it is now.
        series_uid, study_uid = event_uids(task)
        self.events.emit(
            "task.update",
            task_id=task.id,
            series_uid=series_uid,
            study_uid=study_uid,
            message="waiting for the next attempt",
            task=task.model_dump(mode="json"),
            stage=Stage.OUTGOING.value,
        )
        return task_dir

    def _fail(self, claim: Claim, config: MercureConfig, reason: str) -> Path:
        destination = fail_and_report(
            claim.path,
            self.data,
            self.events,
            stage=FAIL_STAGE,
            reason=reason,
            service="dispatcher",
            config=config,
        )
        claim.moved_to(destination)
        log.warning("task %s moved to error/: %s", destination.name, reason)
        return destination

    async def _attempt(
        self,
        task: Task,
        name: str,
        files: list[Path],
        confirmed: dict[str, int],
        journal: ProgressJournal,
        config: MercureConfig,
    ) -> None:
        assert task.dispatch is not None
        status = task.dispatch.status.setdefault(name, TargetStatus())
        policy = RetryPolicy.from_config(config.dispatch, self.rng)
        target_config = config.targets.get(name)
        if target_config is None:
            self._failed(task, name, status, f"target '{name}' is not in the configuration", True)
            return
        pending = [f for f in files if f.name not in confirmed]
        already = dict(confirmed)
        counters = _Attempt()

        lock = threading.Lock()

        def confirm(file: Path, size: int) -> None:
            # Plug-ins may confirm from several threads (one per DICOM association).
            journal.record(name, file, size)
            with lock:
                already[file.name] = size
                counters.instances += 1
                counters.size += size

        job = SendJob(task.id, journal.task_dir, task.info, pending, len(files))
        permanent = False
        async with (
            self._limit(name, target_config.max_parallel_tasks),
            self._shared_slot(name, target_config.max_parallel_tasks, config),
        ):
            series_uid, study_uid = event_uids(task)
            self.events.emit(
                "dispatch.begin",
                task_id=task.id,
                series_uid=series_uid,
                study_uid=study_uid,
                message=f"sending {len(pending)} of {len(files)} instances to {name}",
                target=name,
                instances=len(pending),
                attempt=status.retries + 1,
            )
            try:
                plugin = build_target(name, target_config)
                result = await plugin.send(job, confirm)
                reason = _rejection_reason(result, len(files))
            except MercureError as exc:
                reason, permanent = str(exc), isinstance(exc, PermanentError)
            except OSError as exc:
                reason = str(exc)
            except Exception as exc:  # per-task boundary: record why, retry, never crash
                log.exception("unexpected error sending task %s to %s", task.id, name)
                reason = f"unexpected {type(exc).__name__}: {exc}"
        status.instances_sent = len(already)
        status.bytes_sent = sum(already.values())
        status.time = utcnow()
        if reason is None:
            status.state = "complete"
            status.reason = None
            status.next_retry_at = None
            self.events.emit(
                "dispatch.complete",
                task_id=task.id,
                series_uid=series_uid,
                study_uid=study_uid,
                message=f"{len(files)} instances delivered to {name}",
                target=name,
                instances=counters.instances,
                bytes=counters.size,
                instances_total=status.instances_sent,
                bytes_total=status.bytes_sent,
            )
            return
        status.retries += 1
        final = permanent or policy.exhausted(status.retries)
        if not final:
            status.next_retry_at = utcnow() + timedelta(seconds=policy.delay(status.retries))
        self._failed(task, name, status, reason, final, counters)

    def _failed(
        self,
        task: Task,
        name: str,
        status: TargetStatus,
        reason: str,
        final: bool,
        counters: _Attempt | None = None,
    ) -> None:
        status.reason = reason
        if final:
            status.state = "error"
            status.next_retry_at = None
        log.warning(
            "task %s, target %s, attempt %d failed%s: %s",
            task.id,
            name,
            status.retries,
            " (no attempt left)" if final else "",
            reason,
        )
        series_uid, study_uid = event_uids(task)
        self.events.emit(
            "dispatch.failed",
            severity="error" if final else "warning",
            task_id=task.id,
            series_uid=series_uid,
            study_uid=study_uid,
            message=reason,
            target=name,
            attempt=status.retries,
            final=final,
            will_retry=not final,
            reason=reason,
            next_retry_at=status.next_retry_at.isoformat() if status.next_retry_at else None,
            instances=counters.instances if counters else 0,
            bytes=counters.size if counters else 0,
        )


def _rejection_reason(result: SendResult, total: int) -> str | None:
    if not result.rejected:
        return None
    items = sorted(result.rejected.items())
    listed = "; ".join(f"{path.name}: {why}" for path, why in items[:MAX_LISTED_REJECTIONS])
    more = len(items) - MAX_LISTED_REJECTIONS
    suffix = f"; and {more} more" if more > 0 else ""
    return f"refused {len(items)} of {total} instances: {listed}{suffix}"
