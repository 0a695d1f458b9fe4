"""Running one retrieve job: study by study, verified against what arrived, resumable.

One try of a study (under one of the source's slots, :mod:`.limits`):

1. an accession not yet looked up is queried (C-FIND / QIDO by accession): no match fails the
   study ("not found at SOURCE"); several matches become several studies of the job;
2. a study whose series are not yet listed is queried at series level; the ``--series-filter``
   selects series; a mark (``complete: false``, the listed count) is written for each selected
   series before anything is fetched, so the router waits for the retrieve's end;
3. what already arrived is counted (the journals in ``incoming/``); only the series that are
   short are fetched: the whole study when none of it is there (and no filter applies), else
   series by series. So a study that was half fetched when the process died is never fetched
   again in full;
4. the count is taken again. Every series complete: the study is done. Otherwise (or when the
   source was down, timed out or refused) the try counts; the next one comes after
   ``retrieve.retry_delay``, doubled per try (at most an hour), up to ``retrieve.max_attempts``;
   then the study failed. Either way its marks are rewritten ``complete: true`` and the router
   takes the series at once.

The state file is rewritten after every change, so a restarted service takes the job up where
it stood: studies that were running are tried again from step 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from mercure.core.clock import utcnow
from mercure.core.config import MercureConfig
from mercure.core.config.models import DicomSource, DicomWebSource
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import EventClient, Severity
from mercure.core.retrievemarks import RetrieveMark, marks_of_job, remove_mark, write_mark
from mercure.core.rules import CompiledRule, compile_rule
from mercure.retriever.fetching import Fetcher, RetrieveFailed
from mercure.retriever.jobs import (
    JobProgress,
    JobRequest,
    JobState,
    SeriesProgress,
    StudyProgress,
    read_control,
    write_progress,
)
from mercure.retriever.limits import SourceLimits
from mercure.retriever.listing import series_of_study, studies_of_accession
from mercure.retriever.verify import arrived_instances

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 3600.0
CONTROL_POLL = 1.0
"""Seconds between looks at the control file and the off-peak window."""
RATE_WINDOW = 60.0

STUDY_SEVERITY: dict[str, Severity] = {"done": "info", "retrying": "warning", "failed": "error"}

SourceConfig = DicomSource | DicomWebSource
FetcherFactory = Callable[[str, SourceConfig], Fetcher]


@dataclass
class Environment:
    """What every job of the process shares."""

    data: DataFolder
    events: EventClient
    limits: SourceLimits
    fetcher_for: FetcherFactory
    config: Callable[[], MercureConfig]
    """The configuration in force now (it may be reloaded while a job runs)."""


def compile_series_filter(expression: str | None) -> CompiledRule | None:
    """The ``--series-filter`` compiled as a rule; RuleSyntaxError (with the position) if bad."""
    if not expression:
        return None
    return compile_rule(expression, name="series-filter")


def in_window(config: MercureConfig) -> bool:
    """Whether the off-peak window is open now (local wall-clock time)."""
    return config.offpeak.contains(datetime.now().astimezone())


def retry_delay(config: MercureConfig, attempts: int) -> float:
    """Seconds before the next try of a study that failed ``attempts`` times."""
    return min(config.retrieve.retry_delay * 2 ** max(0, attempts - 1), MAX_RETRY_DELAY)


class JobRunner:
    """Runs one job to its end (done, failed, cancelled) or until the process stops."""

    def __init__(
        self, folder: Path, request: JobRequest, progress: JobProgress, env: Environment
    ) -> None:
        self.folder = folder
        self.request = request
        self.progress = progress
        self.env = env
        self.series_filter = compile_series_filter(request.series_filter)
        self._running: dict[int, asyncio.Task[None]] = {}
        """Tries in progress by study index."""
        self._samples: deque[tuple[float, int]] = deque()
        self._reported_state: JobState | None = None

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.request.id

    # --- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the job until it ends, or until cancelled (the process is stopping)."""
        progress = self.progress
        for study in progress.studies:
            if study.state == "running":  # the process died during this try
                study.state = "pending"
                study.next_try = None
        if progress.started is None:
            progress.started = utcnow()
        self._reported_state = progress.state if progress.state != "queued" else None
        try:
            while True:
                action = read_control(self.folder).action
                if action == "cancel":
                    await self._stop_tries()
                    self._end("cancelled", "cancelled by the operator")
                    return
                due = self._due_studies()
                if not due and not self._running and self._all_finished():
                    failed = progress.counts()[1]
                    if failed:
                        self._end("failed", f"{failed} of {len(progress.studies)} studies failed")
                    else:
                        self._end("done", None)
                    return
                config = self.env.config()
                if action == "pause":
                    self._set_state("paused", "paused by the operator")
                elif self.request.offpeak and not in_window(config):
                    window = f"{config.offpeak.start:%H:%M}-{config.offpeak.end:%H:%M}"
                    self._set_state("waiting-offpeak", f"waiting for the off-peak window {window}")
                else:
                    self._set_state("running", None)
                    room = config.retrieve.studies_in_parallel - len(self._running)
                    for index in due[: max(0, room)]:
                        self._running[index] = asyncio.create_task(self._try_study(index))
                await self._wait(CONTROL_POLL)
        finally:
            await self._stop_tries()

    def _all_finished(self) -> bool:
        return all(s.state in ("done", "failed") for s in self.progress.studies)

    def _due_studies(self) -> list[int]:
        now = utcnow()
        return [
            index
            for index, study in enumerate(self.progress.studies)
            if study.state == "pending"
            and index not in self._running
            and (study.next_try is None or study.next_try <= now)
        ]

    async def _wait(self, timeout: float) -> None:
        if self._running:
            await asyncio.wait(
                list(self._running.values()), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        else:
            await asyncio.sleep(timeout)

    async def _stop_tries(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running.clear()

    # --- one try of one study ----------------------------------------------------------------
    async def _try_study(self, index: int) -> None:
        study = self.progress.studies[index]
        config = self.env.config()
        name = self.request.source
        try:
            source = config.sources.get(name)
            study.state = "running"
            study.attempts += 1
            self._save()
            if source is None:
                raise RetrieveFailed(f"no source {name!r} in the configuration")
            async with self.env.limits.slot(name, source):
                await self._attempt(study, source)
        except asyncio.CancelledError:
            raise
        except RetrieveFailed as exc:
            study.reason = str(exc)
            log.warning(
                "job %s: study %s, try %d: %s",
                self.job_id,
                study.study_uid or "(accession query)",
                study.attempts,
                exc,
            )
        except Exception as exc:
            study.reason = f"{type(exc).__name__}: {exc}"
            log.exception("job %s: study %s failed unexpectedly", self.job_id, study.study_uid)
        finally:
            self._running.pop(index, None)
        self._settle(study, config)

    async def _attempt(self, study: StudyProgress, source: SourceConfig) -> None:
        name = self.request.source
        study_tags: dict[str, str] = {}
        if study.study_uid is None:
            matches = await studies_of_accession(name, source, study.accession)
            if not matches:
                study.state = "failed"
                study.reason = f"not found at {name}"
                return
            known = {s.study_uid for s in self.progress.studies}
            (study.study_uid, study_tags), *others = matches
            for study_uid, _ in others:
                if study_uid not in known:
                    self.progress.studies.append(
                        StudyProgress(accession=study.accession, study_uid=study_uid)
                    )
            self._save()
        assert study.study_uid is not None
        if study.series is None:
            listed = await series_of_study(name, source, study.study_uid, study_tags)
            if not listed:
                raise RetrieveFailed(f"source {name} lists no series for the study")
            selected = [s for s in listed if self._selected(s.tags)]
            for series in selected:
                write_mark(
                    self.env.data,
                    series.series_uid,
                    RetrieveMark(
                        job=self.job_id,
                        source=name,
                        study=study.study_uid,
                        rule=self.request.rule,
                        complete=False,
                        expected=series.expected,
                    ),
                )
            study.series = {s.series_uid: SeriesProgress(expected=s.expected) for s in selected}
            study.reason = None
            self._save()
        self._count(study)
        short = [uid for uid, s in study.series.items() if not _complete(s)]
        if not short:
            return
        whole = (
            self.series_filter is None and len(short) == len(study.series) and study.retrieved == 0
        )
        fetcher = self.env.fetcher_for(name, source)
        report = await fetcher.fetch(study.study_uid, None if whole else short)
        self._count(study)
        if report.warning:
            study.reason = report.warning

    def _selected(self, tags: dict[str, str]) -> bool:
        if self.series_filter is None:
            return True
        return self.series_filter.evaluate(tags).value

    def _count(self, study: StudyProgress) -> None:
        """Take the journals' counts (never lower than seen before: the router may have taken
        a series already, and what came once is not fetched again)."""
        for series_uid, series in (study.series or {}).items():
            arrived = len(arrived_instances(self.env.data, series_uid))
            series.retrieved = max(series.retrieved, arrived)
        self._sample()
        self._save()

    def _settle(self, study: StudyProgress, config: MercureConfig) -> None:
        """After a try: done, failed for good, or pending with the time of the next try."""
        if study.state == "failed":  # decided during the try (not found)
            self._study_ended(study, "failed")
            return
        complete = study.series is not None and all(_complete(s) for s in study.series.values())
        if complete:
            study.state = "done"
            study.reason = None
            self._study_ended(study, "done")
            return
        if study.reason is None and study.series is not None:
            missing = _missing(study)
            study.reason = f"{missing} instance(s) missing after try {study.attempts}"
        if study.attempts >= config.retrieve.max_attempts:
            study.state = "failed"
            self._study_ended(study, "failed")
            return
        study.state = "pending"
        delay = retry_delay(config, study.attempts)
        study.next_try = utcnow() + timedelta(seconds=delay)
        self._save()
        self._emit_study(study, "retrying")

    def _study_ended(self, study: StudyProgress, state: str) -> None:
        study.next_try = None
        if study.study_uid is not None:
            for series_uid, series in (study.series or {}).items():
                write_mark(
                    self.env.data,
                    series_uid,
                    RetrieveMark(
                        job=self.job_id,
                        source=self.request.source,
                        study=study.study_uid,
                        rule=self.request.rule,
                        complete=True,
                        expected=series.expected,
                    ),
                )
        self._save()
        self._emit_study(study, state)
        self._emit_job()

    # --- state, events -------------------------------------------------------------------
    def _save(self) -> None:
        write_progress(self.folder, self.progress)

    def _set_state(self, state: JobState, reason: str | None) -> None:
        if self.progress.state == state and self.progress.reason == reason:
            return
        self.progress.state = state
        self.progress.reason = reason
        self._save()
        if state != self._reported_state:
            self._reported_state = state
            log.info("job %s: %s%s", self.job_id, state, f" ({reason})" if reason else "")
            self._emit_job()

    def _end(self, state: JobState, reason: str | None) -> None:
        for study in self.progress.studies:
            if study.state == "running":  # a try cut short by a cancel
                study.state = "pending"
        self._clean_marks()
        self.progress.ended = utcnow()
        self._set_state(state, reason)

    def _clean_marks(self) -> None:
        """Marks left at the job's end: hand over what arrived, forget what never did."""
        incoming = self.env.data.stage(Stage.INCOMING)
        for series_uid, mark in marks_of_job(self.env.data, self.job_id):
            if not (incoming / series_uid).is_dir():
                remove_mark(self.env.data, series_uid)
            elif not mark.complete:
                write_mark(
                    self.env.data,
                    series_uid,
                    RetrieveMark(
                        job=mark.job,
                        source=mark.source,
                        study=mark.study,
                        rule=mark.rule,
                        complete=True,
                        expected=mark.expected,
                    ),
                )

    def _sample(self) -> None:
        now = time.monotonic()
        self._samples.append((now, self.progress.instances))
        while self._samples and self._samples[0][0] < now - RATE_WINDOW:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Instances per second over the last minute (None before two samples)."""
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return round((n1 - n0) / (t1 - t0), 2) if t1 > t0 else None

    def _emit_job(self) -> None:
        progress = self.progress
        done, failed, remaining = progress.counts()
        self.env.events.emit(
            "retrieve.job",
            severity="error" if progress.state == "failed" else "info",
            message=f"retrieve job {self.job_id}: {progress.state} "
            f"({done} done, {failed} failed, {remaining} remaining)",
            job=self.job_id,
            source=self.request.source,
            state=progress.state,
            studies_total=len(progress.studies),
            studies_done=done,
            studies_failed=failed,
            studies_remaining=remaining,
            instances=progress.instances,
            rate=self.rate(),
            offpeak=self.request.offpeak,
            reason=progress.reason,
        )

    def _emit_study(self, study: StudyProgress, state: str) -> None:
        self.env.events.emit(
            "retrieve.study",
            severity=STUDY_SEVERITY[state],
            message=f"retrieve job {self.job_id}: study {state}"
            + (f": {study.reason}" if study.reason and state != "done" else ""),
            study_uid=study.study_uid,
            job=self.job_id,
            source=self.request.source,
            state=state,
            expected=study.expected,
            retrieved=study.retrieved,
            attempt=study.attempts,
            reason=study.reason if state != "done" else None,
        )


def _complete(series: SeriesProgress) -> bool:
    if series.expected is None:
        return series.retrieved > 0
    return series.retrieved >= series.expected


def _missing(study: StudyProgress) -> int:
    return sum(max(0, (s.expected or 1) - s.retrieved) for s in (study.series or {}).values())
