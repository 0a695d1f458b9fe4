"""The studies being collected in ``studies/``: when each is due, and moving them on.

The folders are the truth (:class:`~mercure.router.studies.StudyStore`); this keeps what the
router needs to know when to look at each study again, rebuilt from the folders at start-up
and at every rescan (``mercure study complete`` may have moved one away meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import MercureError, TaskError
from mercure.core.events import EventClient
from mercure.core.notifications.triggers import notify_safely
from mercure.core.task import Task, fail_and_report
from mercure.router import report
from mercure.router.studies import StudyState, StudyStore, judge_study

log = logging.getLogger(__name__)


class StudyCollector:
    """Keeps track of the collecting studies and completes them when they are due."""

    def __init__(self, data: DataFolder, events: EventClient) -> None:
        self.data = data
        self.events = events
        self.store = StudyStore(data)
        self.states: dict[str, StudyState] = {}
        self._checks: dict[str, float] = {}
        self._reported: set[str] = set()

    def sync(self, now: float) -> None:
        """Match the folders in ``studies/``; a damaged one goes to ``error/``."""
        names = set(self.store.names())
        for name in [n for n in self.states if n not in names]:
            self._forget(name)
        for name in sorted(names - set(self.states)):
            try:
                state = StudyState.from_task(name, self.store.read(name))
            except TaskError as exc:
                log.error("study folder %s is damaged, moved to error/: %s", name, exc)
                fail_and_report(
                    self.store.root / name,
                    self.data,
                    self.events,
                    stage="router",
                    reason=str(exc),
                    service="router",
                )
                continue
            self.states[name] = state
            self._checks[name] = now

    def joined(self, name: str, task: Task) -> None:
        """A series joined (or created) study ``name``: look at it now."""
        self.states[name] = StudyState.from_task(name, task)
        self._checks[name] = 0.0

    def recheck_all(self, now: float) -> None:
        """Look at every study again (the configuration changed)."""
        for name in self.states:
            self._checks[name] = now

    def recheck_study(self, study_uid: str) -> None:
        """Look at the studies of ``study_uid`` at the next run (a retrieve mark changed)."""
        for name, state in self.states.items():
            if state.study_uid == study_uid:
                self._checks[name] = 0.0

    def recheck_retrieved(self, now: float) -> None:
        """Look at every study a retrieve job started (the rescan: a mark change or a job
        deletion may have gone unnoticed)."""
        for name, state in self.states.items():
            if state.retrieve_job is not None:
                self._checks[name] = min(self._checks.get(name, now), now)

    def next_check(self) -> float | None:
        """When a study is due to be looked at next."""
        return min(self._checks.values(), default=None)

    def run_due(
        self,
        now: float,
        config: MercureConfig,
        pending_studies: Callable[[], set[str]],
        retrieve_pending: Callable[[str, str], bool | None] = lambda _job, _study: None,
    ) -> None:
        """Complete the studies that are due; ``pending_studies`` gives the StudyInstanceUIDs
        of series still waiting in ``incoming/`` (asked at most once, only when needed),
        ``retrieve_pending(job, study_uid)`` whether a retrieve job still owes a study a
        series (None if the job is gone)."""
        due = [name for name, when in self._checks.items() if when <= now]
        pending: set[str] | None = None
        for name in due:
            state = self.states.get(name)
            if state is None:
                self._checks.pop(name, None)
                continue
            if pending is None:
                pending = pending_studies()
            owed = (
                retrieve_pending(state.retrieve_job, state.study_uid)
                if state.retrieve_job is not None
                else None
            )
            verdict = judge_study(
                state,
                now,
                config,
                series_pending=state.study_uid in pending,
                retrieve_pending=owed,
            )
            if verdict.required_error and name not in self._reported:
                self._reported.add(name)
                report.rule_error(self.events, "", state.rule or name, verdict.required_error)
            if verdict.complete:
                self._complete(name, verdict.forced, verdict.discard, verdict.reason, now, config)
            elif verdict.check_at is None:
                self._checks.pop(name, None)
            else:
                self._checks[name] = verdict.check_at

    def _complete(
        self, name: str, forced: bool, discard: bool, reason: str, now: float, config: MercureConfig
    ) -> None:
        try:
            completed = self.store.complete(name, forced=forced, discard=discard, reason=reason)
        except (MercureError, OSError) as exc:
            log.error("study %s: cannot complete: %s", name, exc)
            self._checks[name] = now + config.router.rescan_interval
            return
        if completed is None and (self.store.root / name).is_dir():
            self._checks[name] = now + 1.0  # held by `mercure study complete` right now
            return
        self._forget(name)
        if completed is None:
            return
        task = completed.task
        report.study_moved(self.events, task, completed.stage, completed.path, reason)
        if task.info.action == "notification":
            report.notification(self.events, task.info.applied_rule or name, None, task.info.uid)
            if completed.stage is Stage.SUCCESS:
                # A collected study of a notification rule is complete once it is in success/.
                # Queued after the move (complete_study_folder does it in one step, also for
                # `mercure study complete`): a crash right here loses this one notification.
                notify_safely(
                    self.data,
                    config,
                    task,
                    "completion",
                    task_dir=completed.path,
                    events=self.events,
                )

    def _forget(self, name: str) -> None:
        self.states.pop(name, None)
        self._checks.pop(name, None)
        self._reported.discard(name)
