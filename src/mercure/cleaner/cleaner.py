"""One cleaning pass: finish interrupted removals, apply retention in the window, relieve disk
pressure at any time. Shared by the ``cleaner`` service and ``mercure clean``.

Under disk pressure the pass re-measures after every removal and takes the lower of two
readings: the probe (the truth, including other writers and hard links shared with other
tasks) and a projection (usage at the start minus what the removed tasks held alone). The
projection stops the pass on filesystems that release space late (btrfs, XFS); the probe stops
it when another task still holds the removed files. A pass that stops early is continued by the
next one, a pass never deletes more than needed.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mercure.cleaner.diskusage import DiskUsage, UsageProbe, statvfs_probe
from mercure.cleaner.policy import (
    Reason,
    due_for_retention,
    in_window,
    pressure_order,
    pressure_target,
    under_pressure,
)
from mercure.cleaner.removal import DeleteTree, finish_leftovers, hide, leftovers
from mercure.cleaner.retained import FINISHED_STAGES, Retained, measure, scan_retained
from mercure.core.claims import Claim
from mercure.core.clock import utcnow
from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import TaskError
from mercure.core.events import EventClient
from mercure.core.task import read_task

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (tests inject their own)."""

_SUMMARY_IDS = 200
"""At most this many task ids are listed in a disk-pressure summary event."""


def local_now() -> datetime:
    """The current time in the local timezone (the cleaning window is local wall-clock time)."""
    return utcnow().astimezone()


@dataclass(frozen=True)
class Removal:
    """A task a pass removed (or, in a dry run, would remove)."""

    stage: Stage
    task_id: str
    reason: Reason
    age: float
    bytes: int

    @property
    def where(self) -> str:
        """``<stage>/<task_id>``."""
        return f"{self.stage.value}/{self.task_id}"


@dataclass
class PassReport:
    """What one pass did, or would do in a dry run."""

    now: datetime
    dry_run: bool
    window_open: bool
    usage_before: DiskUsage
    usage_after: DiskUsage
    pressure: bool
    removals: list[Removal] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)
    """``<stage>/<name>`` of due tasks skipped because another process holds them."""
    leftovers: list[str] = field(default_factory=list)
    """``<stage>/<name>`` of interrupted removals finished (or, in a dry run, to finish)."""


class Cleaner:
    """Runs cleaning passes over one data folder."""

    def __init__(
        self,
        data: DataFolder,
        events: EventClient | None,
        *,
        clock: Clock = local_now,
        probe: UsageProbe | None = None,
        delete_tree: DeleteTree = shutil.rmtree,
    ) -> None:
        self.data = data
        self.events = events
        self.clock = clock
        self.probe = probe or statvfs_probe(data.root)
        self.delete_tree = delete_tree
        self._stuck_reported = False

    def finish_leftovers(self) -> list[str]:
        """Finish removals a crash interrupted; ``<stage>/<name>`` of those now gone."""
        finished = []
        for stage in FINISHED_STAGES:
            for path in finish_leftovers(self.data.stage(stage), self.delete_tree):
                log.info("finished the interrupted removal of %s/%s", stage.value, path.name)
                finished.append(f"{stage.value}/{path.name}")
        return finished

    def run_pass(
        self,
        config: MercureConfig,
        *,
        dry_run: bool = False,
        ignore_window: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> PassReport:
        """One pass; in a dry run nothing changes and the report lists what would go."""
        cleaning = config.cleaner
        if dry_run:
            unfinished = [
                f"{stage.value}/{path.name}"
                for stage in FINISHED_STAGES
                for path in leftovers(self.data.stage(stage))
            ]
        else:
            unfinished = self.finish_leftovers()
        now = self.clock()
        usage = self.probe()
        report = PassReport(
            now=now,
            dry_run=dry_run,
            window_open=ignore_window or in_window(config, now),
            usage_before=usage,
            usage_after=usage,
            pressure=under_pressure(cleaning, usage.percent),
            leftovers=unfinished,
        )
        if not report.pressure:
            self._stuck_reported = False
        if not (report.window_open or report.pressure):
            return report

        run = _Run(self, report, dry_run)
        tasks = scan_retained(self.data)
        if report.window_open:
            for task in due_for_retention(tasks, cleaning, now):
                if should_stop():
                    return run.finish()
                run.remove(task, Reason.RETENTION)
        if report.pressure:
            target = pressure_target(cleaning)
            for task in pressure_order(tasks, cleaning):
                if run.usage().percent < target or should_stop():
                    break
                if task.path not in run.handled:
                    run.remove(task, Reason.DISK_PRESSURE)
        run.finish()
        if report.pressure and not dry_run:
            self._report_pressure(report, config)
        return report

    def _report_pressure(self, report: PassReport, config: MercureConfig) -> None:
        relieved = [r for r in report.removals if r.reason is Reason.DISK_PRESSURE]
        before, after = report.usage_before.percent, report.usage_after.percent
        threshold = config.cleaner.disk_threshold_percent
        target = pressure_target(config.cleaner)
        stuck = after >= target
        if not relieved and (not stuck or self._stuck_reported):
            # Retention alone relieved it, or the administrators were already told.
            self._stuck_reported = stuck
            return
        self._stuck_reported = stuck
        message = f"disk usage {before:.1f}% reached the {threshold:g}% threshold"
        if relieved:
            message += (
                f": removed {len(relieved)} tasks ({_counts(relieved)}), usage now {after:.1f}%"
            )
        if stuck:
            message += f"; nothing more may be removed to reach {target:g}%"
        log.warning("%s", message)
        if self.events is not None:
            self.events.emit(
                "cleaner.disk_pressure",
                severity="warning",
                message=message,
                usage_before=round(before, 2),
                usage_after=round(after, 2),
                threshold=threshold,
                target=target,
                removed=_per_stage(relieved),
                removed_bytes=sum(r.bytes for r in relieved),
                task_ids=[r.where for r in relieved[:_SUMMARY_IDS]],
                more=max(0, len(relieved) - _SUMMARY_IDS),
            )


def _per_stage(removals: list[Removal]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for removal in removals:
        counts[removal.stage.value] = counts.get(removal.stage.value, 0) + 1
    return counts


def _counts(removals: list[Removal]) -> str:
    return ", ".join(f"{stage} {count}" for stage, count in _per_stage(removals).items())


class _Run:
    """The state of one pass: what was handled, and the usage as far as it is known."""

    def __init__(self, cleaner: Cleaner, report: PassReport, dry_run: bool) -> None:
        self.cleaner = cleaner
        self.report = report
        self.dry_run = dry_run
        self.handled: set[Path] = set()
        self.freed = 0
        self.moment = report.now.timestamp()

    def usage(self) -> DiskUsage:
        """The lower of the probe and the projection (see the module docstring)."""
        projected = self.report.usage_before.minus(self.freed)
        if self.dry_run:
            return projected
        probed = self.cleaner.probe()
        return probed if probed.used < projected.used else projected

    def remove(self, task: Retained, reason: Reason) -> None:
        """Remove one task (or, in a dry run, note it); skips it if another process claims it."""
        self.handled.add(task.path)
        if self.dry_run:
            if Claim.is_claimed(task.path):
                self.report.claimed.append(f"{task.stage.value}/{task.name}")
                return
            size = measure(task.path)
            self._record(task, reason, size.bytes, size.freeable)
            return
        hidden = hide(task.path, self.cleaner.delete_tree)
        if hidden is None:
            if task.path.exists():
                self.report.claimed.append(f"{task.stage.value}/{task.name}")
            return
        try:
            size = measure(hidden.path)
            removal = self._record(task, reason, size.bytes, size.freeable, hidden.path)
            hidden.delete(self.cleaner.delete_tree)
            log.info("removed %s (%s, %.0f s old)", removal.where, reason.value, removal.age)
        except OSError as exc:
            # The task is already out of sight; its leftover is retried on the next pass.
            log.warning(
                "removing %s/%s did not finish (will retry): %s", task.stage, task.name, exc
            )
        finally:
            hidden.release()

    def _record(
        self,
        task: Retained,
        reason: Reason,
        size: int,
        freeable: int,
        hidden_path: Path | None = None,
    ) -> Removal:
        removal = Removal(task.stage, task.name, reason, task.age(self.moment), size)
        self.report.removals.append(removal)
        self.freed += freeable
        events = self.cleaner.events
        if not self.dry_run and events is not None:
            task_id, series_uid, study_uid = task.name, None, None
            if hidden_path is not None:
                task_id, series_uid, study_uid = _identity(hidden_path, task.name)
            events.emit(
                "task.cleaned",
                task_id=task_id,
                series_uid=series_uid,
                study_uid=study_uid,
                message=f"removed from {task.stage.value} ({reason.value})",
                # "stage" would be the state after the event for the bookkeeper (kinds.py);
                # task.cleaned implies "cleaned", so the stage it left is "from_stage".
                from_stage=task.stage.value,
                age=round(removal.age, 3),
                bytes=size,
                reason=reason.value,
            )
        return removal

    def finish(self) -> PassReport:
        """Fill in the usage at the end and return the report."""
        self.report.usage_after = self.usage()
        return self.report


def _identity(folder: Path, fallback: str) -> tuple[str, str | None, str | None]:
    """Task id and series or study UID from task.json; the folder name if it is unreadable."""
    try:
        task = read_task(folder)
    except TaskError:
        return fallback, None, None
    if task.info.uid_type == "study":
        return task.id, None, task.info.uid
    return task.id, task.info.uid, None
