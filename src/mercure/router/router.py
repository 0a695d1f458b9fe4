"""The router's work without the event loop: which series are due, routing them, studies.

:class:`Router` is driven from outside: notifications (``on_*``, from inotify in the service)
keep its picture of ``incoming/`` current, :meth:`Router.run_due` does whatever is due, and
:meth:`Router.next_wakeup` says when to call it next. It never sleeps and keeps nothing that is
not also on disk, so a restarted router rebuilds it all in :meth:`Router.start`.

A series that cannot be routed (a damaged study folder, a file system error) is the per-task
error boundary: the error is logged once and reported, and the series is retried from its work
folder at the next rescan; a permanent error, or a third failure, moves the whole series to
``error/`` with the reason.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from mercure.core.atomic import atomic_write_json
from mercure.core.clock import utcnow
from mercure.core.config import LoadedConfig, MercureConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import MercureError, PermanentError, TaskError
from mercure.core.events import EventClient
from mercure.core.rules import SeriesTags
from mercure.core.task import ERROR_FILE, Task, TaskInfo, fail_task, new_task_id, write_task
from mercure.router import report
from mercure.router.completion import CompletionPolicy
from mercure.router.decision import Decision, decide
from mercure.router.journal import JOURNAL_FILE, JournalState, read_new_lines
from mercure.router.routing import (
    Plan,
    PlanEntry,
    RoutingWork,
    claim_series,
    execute,
    finish,
    leftover_work,
    routing_root,
)
from mercure.router.studies import StudyState, StudyStore, judge_study
from mercure.router.tags import series_tags
from mercure.router.taskdocs import SeriesFacts, series_tasks, study_folder_name, study_task
from mercure.router.tracker import NoWatcher, PendingSeries, SeriesTracker, SeriesWatcher

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""Failed attempts at routing one series before it goes to ``error/``."""


class Router:
    """Completion, rules and hand-over of the series in ``incoming/``, and study collection."""

    def __init__(
        self,
        data: DataFolder,
        loaded: LoadedConfig,
        events: EventClient,
        *,
        watcher: SeriesWatcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data = data
        self.loaded = loaded
        self.events = events
        self.clock = clock
        self.tracker = SeriesTracker(
            data.stage(Stage.INCOMING), CompletionPolicy(loaded), watcher or NoWatcher()
        )
        self.store = StudyStore(data)
        self.studies: dict[str, StudyState] = {}
        self._study_checks: dict[str, float] = {}
        self._next_rescan = 0.0
        self._failures: dict[str, int] = {}
        self.routed = 0
        """Series routed by this process (for status and benchmarks)."""

    @property
    def config(self) -> MercureConfig:
        """The configuration in force."""
        return self.loaded.config

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Finish work a previous process left, then rebuild the state from disk."""
        routing_root(self.data).mkdir(exist_ok=True)
        self.recover()
        self.rescan()

    def set_config(self, loaded: LoadedConfig) -> None:
        """Use a new configuration from now on (between series)."""
        self.loaded = loaded
        self.tracker.set_policy(CompletionPolicy(loaded))
        now = self.clock()
        for name in self.studies:
            self._study_checks[name] = now
        self._next_rescan = min(self._next_rescan, now + self.config.router.rescan_interval)

    def recover(self) -> int:
        """Finish or redo the routing of series a stopped router left half-done."""
        count = 0
        for work in leftover_work(self.data):
            log.info("resuming routing work left in %s", work.folder.name)
            self._guarded(work, functools.partial(self._resume, work))
            count += 1
        return count

    def rescan(self) -> None:
        """The safety net: re-read ``incoming/`` and ``studies/``, retry left-over work."""
        now = self.clock()
        added, dropped = self.tracker.sync(now)
        if added or dropped:
            log.debug("rescan: %d series found, %d gone", added, dropped)
        self.recover()
        self._sync_studies(now)
        self._next_rescan = now + self.config.router.rescan_interval

    def request_rescan(self) -> None:
        """Rescan at the next opportunity (notifications were lost)."""
        self._next_rescan = 0.0

    # --- notifications -------------------------------------------------------------------
    def on_series_created(self, name: str) -> None:
        """A folder appeared in ``incoming/``."""
        self.tracker.add(name, seen_at=self.clock())

    def on_series_removed(self, name: str) -> None:
        """A folder left ``incoming/`` (claimed by us, or removed by someone)."""
        if not (self.tracker.incoming / name).is_dir():
            self.tracker.remove(name)

    def on_instance(self, name: str) -> None:
        """An instance was renamed into ``incoming/<name>``."""
        self.tracker.instance_arrived(name, self.clock())

    def on_journal(self, name: str) -> None:
        """The journal of ``incoming/<name>`` grew."""
        self.tracker.journal_changed(name)

    def on_tags(self, name: str) -> None:
        """``incoming/<name>/tags.json`` was written."""
        self.tracker.tags_written(name)

    # --- the work ------------------------------------------------------------------------
    def run_due(self, budget: float = 0.05) -> bool:
        """Do what is due; True if more is due already (stopped after ``budget`` seconds)."""
        started = time.monotonic()
        now = self.clock()
        if now >= self._next_rescan:
            self.rescan()
        for series in self.tracker.pop_due(now):
            self._check_series(series, now)
            if time.monotonic() - started > budget:
                return True
        self._check_studies(now)
        return False

    def next_wakeup(self) -> float:
        """When :meth:`run_due` has something to do next (wall-clock time)."""
        times = [self._next_rescan, *self._study_checks.values()]
        series_due = self.tracker.next_due()
        if series_due is not None:
            times.append(series_due)
        return min(times)

    def _check_series(self, series: PendingSeries, now: float) -> None:
        tracker = self.tracker
        if not tracker.refresh(series):
            tracker.remove(series.name)
            return
        due = tracker.deadline(series)
        if due > now:
            tracker.schedule(series, due)
            return
        quiet = tracker.quiet_time(series)

        def still_complete(_folder: Path) -> bool:
            # The series' lock is held: nothing can arrive now; did anything arrive just before?
            return tracker.refresh(series) and tracker.deadline(series) <= self.clock()

        try:
            work = claim_series(self.data, series.name, still_complete)
        except OSError as exc:  # e.g. no space for the work folder: keep the series, try later
            log.error("series %s: cannot claim it: %s", series.name, exc)
            series.retry_at = self.clock() + self.config.router.rescan_interval
            tracker.schedule(series, tracker.deadline(series))
            return
        if work is None:
            if not (tracker.incoming / series.name).is_dir():
                tracker.remove(series.name)
                return
            if tracker.deadline(series) <= self.clock():  # a sender still holds the series
                series.retry_at = self.clock() + tracker.policy.claim_retry(quiet)
            tracker.schedule(series, tracker.deadline(series))
            return
        tracker.remove(series.name)
        self._guarded(
            work, functools.partial(self._route, work, series.journal, quiet.seconds, quiet.source)
        )

    def _guarded(self, work: RoutingWork, action: Callable[[], None]) -> None:
        """The per-series error boundary: log once, report, retry later or give up."""
        name = work.series_name
        try:
            action()
        except (MercureError, OSError, ValidationError) as exc:
            attempts = self._failures.get(name, 0) + 1
            self._failures[name] = attempts
            permanent = isinstance(exc, PermanentError | ValidationError)
            reason = f"routing failed: {type(exc).__name__}: {exc}"
            log.error("series %s: %s (attempt %d)", name, reason, attempts)
            self.events.emit("series.error", severity="error", series_uid=name, message=reason)
            if permanent or attempts >= MAX_ATTEMPTS:
                self._failures.pop(name, None)
                self._fail_work(work, reason)
            else:
                work.release()  # the folder stays: the next rescan tries again
        else:
            self._failures.pop(name, None)

    def _resume(self, work: RoutingWork) -> None:
        plan = work.read_plan()
        if plan is not None:
            self._execute(work, plan)
        elif work.series_dir.is_dir():
            journal = JournalState()
            read_new_lines(work.series_dir / JOURNAL_FILE, journal)
            self._route(work, journal, 0.0, "recovery")
        else:
            finish(work)

    def _route(self, work: RoutingWork, journal: JournalState, quiet: float, by: str) -> None:
        series_uid = work.series_name
        names = work.dicom_names()
        if not names:
            log.warning("series %s: folder without instances removed", series_uid)
            report.series_empty(self.events, series_uid)
            finish(work)
            return
        if journal.calling_aet is None:  # read only the tail at start-up, or never tracked
            read_new_lines(work.series_dir / JOURNAL_FILE, journal)
        folder = work.series_dir
        tags = series_tags(
            folder,
            (folder / name for name in names),
            sender_aet=journal.calling_aet,
            receiver_aet=journal.called_aet,
            sender_address=journal.address,
        )
        facts = SeriesFacts(
            series_uid,
            SeriesTags(tags),
            sender_aet=journal.calling_aet,
            receiver_aet=journal.called_aet,
            sender_address=journal.address,
        )
        decision = decide(
            self.config,
            self.loaded.compiled_rules,
            facts.tags,
            has_study_uid=facts.study_uid is not None,
        )
        for rule, reason in decision.errors.items():
            log.warning("series %s: rule %s: %s", series_uid, rule, reason)
            report.rule_error(self.events, series_uid, rule, reason)
        report.series_received(
            self.events,
            series_uid,
            facts.tags,
            instances=len(names),
            first_received=journal.first_time,
            last_received=journal.last_time,
        )
        report.series_complete(
            self.events,
            series_uid,
            facts.study_uid,
            instances=len(names),
            quiet_time=quiet,
            completed_by=by,
        )
        plan = self._plan(facts, decision)
        work.write_plan(plan)
        self._execute(work, plan)

    def _now(self) -> datetime:
        # Study times follow the router's clock, so that a test can move time forward.
        return datetime.fromtimestamp(self.clock(), UTC)

    def _plan(self, facts: SeriesFacts, decision: Decision) -> Plan:
        now = self._now()
        entries = []
        for rule in decision.study_rules:
            task = study_task(self.config, facts, decision, rule, now)
            entries.append(
                PlanEntry(
                    kind="study",
                    id=task.id,
                    study_folder=study_folder_name(facts.study_uid or "", rule),
                    task=task.model_dump(mode="json"),
                )
            )
        planned = series_tasks(self.config, facts, decision)
        for item in planned:
            entries.append(
                PlanEntry(
                    kind="task",
                    id=item.task.id,
                    stage=item.stage,
                    task=item.task.model_dump(mode="json"),
                )
            )
        if planned:
            entries[-1].take = True
        return Plan(
            series_uid=facts.series_uid,
            study_uid=facts.study_uid,
            entries=entries,
            notify=list(decision.notification_rules),
        )

    def _execute(self, work: RoutingWork, plan: Plan) -> None:
        execute(work, plan, self.data, self._task_arrived, self._join_study)
        for rule in plan.notify:
            report.notification(self.events, rule, plan.series_uid, plan.study_uid)
        self.routed += 1

    def _task_arrived(self, entry: PlanEntry, path: Path) -> None:
        task = Task.model_validate(entry.task)
        stage = Stage(entry.stage or Stage.OUTGOING)
        log.info("series %s: %s task %s in %s", task.info.uid, task.info.action, task.id, stage)
        report.task_created(self.events, task, stage)
        if stage is Stage.DISCARD:
            report.series_discarded(self.events, task)

    def _join_study(self, entry: PlanEntry, path: Path) -> None:
        name = entry.study_folder or ""
        prepared = Task.model_validate(entry.task).study
        series_uid = prepared.received_series_uid[0] if prepared else ""
        task, created = self.store.add_series(path, name, self._now())
        if created:
            report.task_created(self.events, task, Stage.STUDIES)
        else:
            report.study_updated(self.events, task, series_uid)
        log.info("study %s: series %s collected", name, series_uid)
        self.studies[name] = StudyState.from_task(name, task)
        self._study_checks[name] = 0.0

    def _fail_work(self, work: RoutingWork, reason: str) -> None:
        """Give up on a series: what is left of it goes to ``error/`` with the reason."""
        try:
            if work.series_dir.is_dir() and work.dicom_names():
                plan = work.read_plan()
                action = (
                    plan.entries[0].task["info"]["action"] if plan and plan.entries else "route"
                )
                task = Task(
                    id=new_task_id(),
                    info=TaskInfo(
                        action=action,
                        uid=work.series_name,
                        fail_stage="router",
                        reason=reason,
                    ),
                )
                atomic_write_json(
                    work.series_dir / ERROR_FILE,
                    {
                        "fail_stage": "router",
                        "reason": reason,
                        "service": "router",
                        "time": utcnow().isoformat(),
                    },
                )
                write_task(work.series_dir, task)
                destination = self.data.stage(Stage.ERROR) / task.id
                os.rename(work.series_dir, destination)
                self.events.emit(
                    "task.failed",
                    severity="error",
                    task_id=task.id,
                    series_uid=work.series_name,
                    message=reason,
                    task=task.model_dump(mode="json"),
                    stage=Stage.ERROR.value,
                    fail_stage="router",
                    reason=reason,
                )
            finish(work)
        except (MercureError, OSError) as exc:
            log.error(
                "series %s: cannot move to error/ (%s); left in %s",
                work.series_name,
                exc,
                work.folder,
            )
            work.release()

    # --- studies -------------------------------------------------------------------------
    def _sync_studies(self, now: float) -> None:
        names = set(self.store.names())
        for name in [n for n in self.studies if n not in names]:
            self.studies.pop(name, None)
            self._study_checks.pop(name, None)
        for name in sorted(names - set(self.studies)):
            try:
                state = StudyState.from_task(name, self.store.read(name))
            except TaskError as exc:
                log.error("study folder %s is damaged, moved to error/: %s", name, exc)
                fail_task(
                    self.store.root / name,
                    self.data,
                    stage="router",
                    reason=str(exc),
                    service="router",
                )
                continue
            self.studies[name] = state
            self._study_checks[name] = now

    def _check_studies(self, now: float) -> None:
        due = [name for name, when in self._study_checks.items() if when <= now]
        if not due:
            return
        pending: set[str] | None = None
        for name in due:
            state = self.studies.get(name)
            if state is None:
                self._study_checks.pop(name, None)
                continue
            if pending is None:
                pending = self.tracker.study_uids()
            verdict = judge_study(
                state, now, self.config, series_pending=state.study_uid in pending
            )
            if verdict.required_error:
                report.rule_error(self.events, "", state.rule or name, verdict.required_error)
            if not verdict.complete:
                if verdict.check_at is None:
                    self._study_checks.pop(name, None)
                else:
                    self._study_checks[name] = verdict.check_at
                continue
            self._complete_study(name, verdict.forced, verdict.discard, verdict.reason, now)

    def _complete_study(
        self, name: str, forced: bool, discard: bool, reason: str, now: float
    ) -> None:
        try:
            completed = self.store.complete(name, forced=forced, discard=discard, reason=reason)
        except (MercureError, OSError) as exc:
            log.error("study %s: cannot complete: %s", name, exc)
            self._study_checks[name] = now + self.config.router.rescan_interval
            return
        if completed is None and (self.store.root / name).is_dir():
            self._study_checks[name] = now + 1.0  # held by `mercure study complete`
            return
        self.studies.pop(name, None)
        self._study_checks.pop(name, None)
        if completed is None:
            return
        report.study_moved(self.events, completed.task, completed.stage, completed.path, reason)
        if completed.task.info.action == "notification":
            report.notification(
                self.events, completed.task.info.applied_rule or name, None, completed.task.info.uid
            )
