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
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from mercure.core.config import LoadedConfig, MercureConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import MercureError, PermanentError
from mercure.core.events import EventClient
from mercure.core.notifications.queue import Trigger
from mercure.core.notifications.triggers import notify_safely
from mercure.core.retrievemarks import RETRIEVE_JOB_TAG, RETRIEVE_SOURCE_TAG, RetrieveMark
from mercure.core.rules import SeriesTags
from mercure.core.rules.decision import Decision, decide, forced_decision
from mercure.core.task import Task
from mercure.router import report
from mercure.router.collector import StudyCollector
from mercure.router.completion import CompletionPolicy
from mercure.router.journal import JOURNAL_FILE, JournalState, read_new_lines
from mercure.router.retrieved import MarkIndex
from mercure.router.routing import (
    Plan,
    PlanEntry,
    RoutingWork,
    claim_series,
    execute,
    fail_work,
    finish,
    leftover_work,
    routing_root,
)
from mercure.router.studies import StudyState
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
        self.marks = MarkIndex(data)
        self.tracker = SeriesTracker(
            data.stage(Stage.INCOMING),
            CompletionPolicy(loaded),
            watcher or NoWatcher(),
            self.marks.active,
        )
        self.collector = StudyCollector(data, events)
        self._next_rescan = 0.0
        self._failures: dict[str, int] = {}
        self.routed = 0
        """Series routed by this process (for status and benchmarks)."""

    @property
    def studies(self) -> dict[str, StudyState]:
        """The studies being collected, by folder name."""
        return self.collector.states

    @property
    def config(self) -> MercureConfig:
        """The configuration in force."""
        return self.loaded.config

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Finish work a previous process left, then rebuild the state from disk."""
        routing_root(self.data).mkdir(exist_ok=True)
        self.marks.sync()  # before recovery: a series routed again needs its mark
        self.recover()
        self.rescan()

    def set_config(self, loaded: LoadedConfig) -> None:
        """Use a new configuration from now on (between series)."""
        self.loaded = loaded
        self.tracker.set_policy(CompletionPolicy(loaded))
        now = self.clock()
        self.collector.recheck_all(now)
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
        for series_uid in self.marks.sync():
            self._mark_changed(series_uid, None)
        self.tracker.recheck_waiting()
        added, dropped = self.tracker.sync(now)
        if added or dropped:
            log.debug("rescan: %d series found, %d gone", added, dropped)
        self.recover()
        self.collector.sync(now)
        self.collector.recheck_retrieved(now)
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

    def on_mark(self, series_uid: str) -> None:
        """The retrieve mark of a series was written or removed."""
        before, _now = self.marks.reload(series_uid)
        self._mark_changed(series_uid, before)

    def on_job_removed(self, job: str) -> None:
        """A retrieve job's folder went away: its marks no longer count."""
        for series_uid in self.marks.series_of_job(job):
            self._mark_changed(series_uid, None)

    def _mark_changed(self, series_uid: str, before: RetrieveMark | None) -> None:
        self.tracker.mark_changed(series_uid)
        for mark in (before, self.marks.get(series_uid)):
            if mark is not None:
                self.collector.recheck_study(mark.study)

    def waiting_for_retrieve(self) -> dict[str, int]:
        """Series that wait for the end of a retrieve: job -> number of series."""
        return self.tracker.waiting_for_jobs()

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
        self.collector.run_due(now, self.config, self.tracker.study_uids, self._retrieve_pending)
        return False

    def _retrieve_pending(self, job: str, study_uid: str) -> bool | None:
        """Whether retrieve job ``job`` still owes study ``study_uid`` a series; None if the
        job is gone (the study then completes as any other)."""
        if not self.marks.job_exists(job):
            return None
        incoming = self.tracker.incoming
        return self.marks.study_pending(job, study_uid, lambda uid: (incoming / uid).is_dir())

    def next_wakeup(self) -> float:
        """When :meth:`run_due` has something to do next (wall-clock time)."""
        times = [self._next_rescan, self.collector.next_check(), self.tracker.next_due()]
        return min(t for t in times if t is not None)

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
            # Whether the stopped router queued them is unknown: rather twice than never.
            self._notify_reception(plan, work.series_dir, None)
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
            additional_tags=self.config.router.additional_tags,
        )
        mark = self.marks.active(series_uid)
        if mark is not None:
            tags[RETRIEVE_JOB_TAG] = mark.job
            tags[RETRIEVE_SOURCE_TAG] = mark.source
        facts = SeriesFacts(
            series_uid,
            SeriesTags(tags),
            sender_aet=journal.calling_aet,
            receiver_aet=journal.called_aet,
            sender_address=journal.address,
        )
        if mark is not None and mark.rule is not None:
            # The job's forced rule: whatever its expression says (raises PermanentError if
            # the rule is unknown or disabled: the series goes to error/ with the reason).
            decision = forced_decision(
                self.config,
                mark.rule,
                has_study_uid=facts.study_uid is not None,
                why=f"retrieve job {mark.job}",
            )
        else:
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
            retrieve_job=mark.job if mark is not None else None,
        )
        plan = self._plan(facts, decision, mark)
        work.write_plan(plan)
        self._notify_reception(plan, work.series_dir, tags)
        self._execute(work, plan)

    def _now(self) -> datetime:
        # Study times follow the router's clock, so that a test can move time forward.
        return datetime.fromtimestamp(self.clock(), UTC)

    def _plan(self, facts: SeriesFacts, decision: Decision, mark: RetrieveMark | None) -> Plan:
        now = self._now()
        entries = []
        for rule in decision.study_rules:
            task = study_task(self.config, facts, decision, rule, now)
            if task.study is not None and mark is not None:
                task.study.retrieve_job = mark.job  # the job's end completes the study
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

    def _notify_reception(
        self, plan: Plan, series_dir: Path, tags: Mapping[str, str] | None
    ) -> None:
        """Queue the notifications of the tasks ``plan`` creates, before they reach their
        stages (a task once there may be processed, and complete, at once).

        Every task notifies ``reception``; a task of a ``notification`` rule, complete as soon
        as it is in ``success/``, notifies ``completion`` as well. A study notifies when its
        first series starts it, not for each further series that joins it.
        """
        notifying: list[tuple[Task, list[Trigger]]] = []
        for entry in plan.entries:
            study = self.collector.store.root / (entry.study_folder or "")
            if entry.kind == "study" and study.exists():
                continue
            task = Task.model_validate(entry.task)
            triggers: list[Trigger] = ["reception"]
            if entry.stage == Stage.SUCCESS and task.info.action == "notification":
                triggers.append("completion")
            notifying.append((task, triggers))
        # A notification rule that fired beside rules that act on the series has no task of
        # its own (the series is kept by theirs): it notifies with the series' first task.
        covered = {task.info.applied_rule for task, _ in notifying}
        first = plan.entries[0].task if plan.entries else None
        for rule in plan.notify:
            if rule not in covered and first is not None:
                task = Task.model_validate(first)
                task.info.applied_rule = rule
                task.info.action = "notification"
                notifying.append((task, ["reception", "completion"]))
        for task, triggers in notifying:
            for trigger in triggers:
                notify_safely(
                    self.data,
                    self.config,
                    task,
                    trigger,
                    task_dir=series_dir,
                    tags=tags,
                    events=self.events,
                )

    def _execute(self, work: RoutingWork, plan: Plan) -> None:
        on_task = functools.partial(self._task_arrived, plan.study_uid)
        execute(work, plan, self.data, on_task, self._join_study)
        # Only now, with every task of the plan durably in its stage or study, does the mark
        # go: until plan.json was written a restarted router decides again and needs the mark
        # (tags, forced rule); after it, the plan holds the decision. A crash between the
        # end of execute() and this line leaves a mark without a series, which the retriever
        # removes when its job ends and which never holds a study back (its series is gone).
        mark = self.marks.taken(plan.series_uid)
        if mark is not None:  # its study may have waited for this series alone
            self.collector.recheck_study(mark.study)
        for rule in plan.notify:
            report.notification(self.events, rule, plan.series_uid, plan.study_uid)
        self.routed += 1

    def _task_arrived(self, study_uid: str | None, entry: PlanEntry, path: Path) -> None:
        task = Task.model_validate(entry.task)
        stage = Stage(entry.stage or Stage.OUTGOING)
        log.info("series %s: %s task %s in %s", task.info.uid, task.info.action, task.id, stage)
        # task.json of a series task names no study; the bookkeeper links the task by it.
        report.task_created(self.events, task, stage, study_uid=study_uid)
        if stage is Stage.DISCARD:
            report.series_discarded(self.events, task)

    def _join_study(self, entry: PlanEntry, path: Path) -> None:
        name = entry.study_folder or ""
        prepared = Task.model_validate(entry.task).study
        series_uid = prepared.received_series_uid[0] if prepared else ""
        task, created = self.collector.store.add_series(path, name, self._now())
        if created:
            report.task_created(self.events, task, Stage.STUDIES)
        else:
            report.study_updated(self.events, task, series_uid)
        log.info("study %s: series %s collected", name, series_uid)
        self.collector.joined(name, task)

    def _fail_work(self, work: RoutingWork, reason: str) -> None:
        try:
            task = fail_work(work, self.data, reason)
        except (MercureError, OSError) as exc:
            log.error("series %s: cannot move to error/ (%s)", work.series_name, exc)
            work.release()
            return
        mark = self.marks.taken(work.series_name)  # in error/: its study must not wait for it
        if mark is not None:
            self.collector.recheck_study(mark.study)
        if task is not None:
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
