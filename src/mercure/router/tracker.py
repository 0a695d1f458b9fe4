"""The series waiting in ``incoming/``: when each last received an instance, and when it is due.

State comes from the disk and is kept current by notifications: a series folder's modification
time is the time its newest instance was renamed into it (tags.json is written right after the
first instance, so it never delays completion), and the journal says who sent the series and
whether the newest thing that happened was an association release. Nothing here is needed
after a restart: :meth:`SeriesTracker.add` rebuilds a series from its folder.

Deadlines live in a heap. An instance arriving only moves ``activity`` forward; the old heap
entry is checked when it comes due (``refresh``) and pushed again for the later deadline, so a
busy series costs one float assignment per instance rather than a heap operation.

A series a retrieve job fetches (it has an active mark, :mod:`mercure.router.retrieved`) does
not complete by its quiet time: its deadline is infinite until the mark says ``complete``, and
then it is due at once (docs/router.md, "Retrieved series").
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mercure.core.datafolder import is_visible
from mercure.core.dicomtags import TAGS_FILE, read_tags_file
from mercure.core.retrievemarks import RetrieveMark
from mercure.router.completion import CompletionPolicy, QuietTime
from mercure.router.journal import JOURNAL_FILE, JournalState, read_head_and_tail, read_new_lines

log = logging.getLogger(__name__)


class SeriesWatcher(Protocol):
    """Notifications for series folders (inotify in the service; nothing in some tests)."""

    def watch(self, name: str) -> None:
        """Start reporting changes in ``incoming/<name>``."""

    def unwatch(self, name: str) -> None:
        """Stop reporting changes in ``incoming/<name>``."""


class NoWatcher:
    """A watcher that watches nothing: the tracker then relies on its rescans."""

    def watch(self, name: str) -> None:
        """Do nothing."""

    def unwatch(self, name: str) -> None:
        """Do nothing."""


@dataclass(slots=True)
class PendingSeries:
    """One series folder in ``incoming/`` that is not complete yet."""

    name: str
    activity: float
    """Wall-clock time of the newest instance seen."""
    journal: JournalState = field(default_factory=JournalState)
    journal_size: int = 0
    tags_read: bool = False
    study_uid: str | None = None
    rule_trigger: float | None = None
    retry_at: float = 0.0
    """A claim was refused (a sender still delivers): not before then."""
    scheduled: float | None = None


def _no_mark(_series_uid: str) -> RetrieveMark | None:
    return None


class SeriesTracker:
    """All pending series, their completion deadlines and the heap that orders them."""

    def __init__(
        self,
        incoming: Path,
        policy: CompletionPolicy,
        watcher: SeriesWatcher,
        marks: Callable[[str], RetrieveMark | None] = _no_mark,
    ) -> None:
        self.incoming = incoming
        self.policy = policy
        self.watcher = watcher
        self.marks = marks
        """The active retrieve mark of a series (by name), if it has one."""
        self.series: dict[str, PendingSeries] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self.series)

    def __contains__(self, name: str) -> bool:
        return name in self.series

    # --- membership ------------------------------------------------------------------------
    def add(self, name: str, seen_at: float = 0.0) -> PendingSeries | None:
        """Start tracking ``incoming/<name>`` (rebuilding its state from disk); None if gone."""
        existing = self.series.get(name)
        if existing is not None:
            return existing
        folder = self.incoming / name
        self.watcher.watch(name)
        try:
            activity = max(seen_at, os.stat(folder).st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            self.watcher.unwatch(name)
            return None
        series = PendingSeries(name, activity, read_head_and_tail(folder / JOURNAL_FILE))
        series.journal_size = series.journal.offset
        self.series[name] = series
        if self.policy.uses_tags:
            self.read_tags(series)
        self.schedule(series, self.deadline(series))
        self._log_waiting(series)
        return series

    def remove(self, name: str) -> None:
        """Stop tracking a series (it was claimed, or its folder went away)."""
        if self.series.pop(name, None) is not None:
            self.watcher.unwatch(name)

    def sync(self, seen_at: float) -> tuple[int, int]:
        """Rescan ``incoming/``: track new folders, drop vanished ones, refresh the others.

        The safety net under the notifications: cheap enough (one directory listing and a
        ``stat`` or two per series) to run every minute with thousands of series waiting.
        Returns (series added, series dropped).
        """
        present: set[str] = set()
        added = 0
        with os.scandir(self.incoming) as entries:
            for entry in entries:
                if not is_visible(entry.name) or not entry.is_dir(follow_symlinks=False):
                    continue
                present.add(entry.name)
                known = self.series.get(entry.name)
                if known is None:
                    if self.add(entry.name, seen_at=0.0) is not None:
                        added += 1
                else:
                    self.refresh(known)
                    if known.scheduled is None:  # lost its heap entry to an error: look again
                        self.schedule(known, self.deadline(known))
        gone = [name for name in self.series if name not in present]
        for name in gone:
            self.remove(name)
        return added, len(gone)

    # --- what notifications report ---------------------------------------------------------
    def instance_arrived(self, name: str, now: float) -> None:
        """An instance was renamed into the series folder."""
        series = self.series.get(name)
        if series is None:
            self.add(name, seen_at=now)
        elif now > series.activity:
            series.activity = now

    def journal_changed(self, name: str) -> None:
        """The journal grew: read it if that can make the series complete sooner."""
        series = self.series.get(name)
        if series is None:
            return
        series.retry_at = 0.0
        was_released = series.journal.released
        self._read_journal(series)
        if series.journal.released and not was_released:
            self.schedule(series, self.deadline(series))

    def mark_changed(self, name: str) -> None:
        """The series' retrieve mark was written, removed, or its job went away."""
        series = self.series.get(name)
        if series is not None:
            series.retry_at = 0.0
            self.schedule(series, self.deadline(series))
            self._log_waiting(series)

    def waiting_for_jobs(self) -> dict[str, int]:
        """Series held back by a retrieve that has not ended: job -> number of series."""
        counts: dict[str, int] = {}
        for name in self.series:
            mark = self.marks(name)
            if mark is not None and not mark.complete:
                counts[mark.job] = counts.get(mark.job, 0) + 1
        return counts

    def recheck_waiting(self) -> None:
        """Compute again the deadline of every series held by a retrieve (rescan: a mark
        change or a job deletion may have gone unnoticed)."""
        for series in self.series.values():
            if series.scheduled == math.inf:
                self.schedule(series, self.deadline(series))

    def _log_waiting(self, series: PendingSeries) -> None:
        mark = self.marks(series.name)
        if mark is not None and not mark.complete:
            log.info("series %s: waiting for retrieve job %s", series.name, mark.job)

    def tags_written(self, name: str) -> None:
        """tags.json appeared: a rule may override the quiet time."""
        series = self.series.get(name)
        if series is not None and self.policy.uses_tags and not series.tags_read:
            self.read_tags(series)
            self.schedule(series, self.deadline(series))

    # --- state -----------------------------------------------------------------------------
    def refresh(self, series: PendingSeries) -> bool:
        """Bring a series up to date from its folder; False if the folder is gone."""
        folder = self.incoming / series.name
        try:
            mtime = os.stat(folder).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return False
        if mtime > series.activity:
            series.activity = mtime
        try:
            size = os.stat(folder / JOURNAL_FILE).st_size
        except FileNotFoundError:
            size = 0
        if size != series.journal_size:
            self._read_journal(series)
        if self.policy.uses_tags and not series.tags_read:
            self.read_tags(series)
        return True

    def _read_journal(self, series: PendingSeries) -> None:
        path = self.incoming / series.name / JOURNAL_FILE
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return
        if size < series.journal.offset:  # rewritten (rebuilt from the files): read it again
            series.journal = JournalState()
        read_new_lines(path, series.journal)
        series.journal_size = size

    def read_tags(self, series: PendingSeries) -> None:
        """Read the series' tags.json once: its study and any rule override of the quiet time."""
        tags = read_tags_file(self.incoming / series.name / TAGS_FILE)
        if tags is None:
            return
        series.tags_read = True
        series.study_uid = tags.get("StudyInstanceUID") or None
        series.rule_trigger = self.policy.rule_trigger(tags) if self.policy.uses_tags else None

    def quiet_time(self, series: PendingSeries) -> QuietTime:
        """How long this series must be quiet to be complete (none at all once the retrieve
        job that fetches it says it ended, forever while it has not)."""
        mark = self.marks(series.name)
        if mark is not None:
            if mark.complete:
                return QuietTime(0.0, f"retrieve job {mark.job}")
            return QuietTime(math.inf, f"waiting for retrieve job {mark.job}")
        return self.policy.quiet_time(series.journal, series.rule_trigger)

    def deadline(self, series: PendingSeries) -> float:
        """When the series is complete if nothing else arrives."""
        return max(series.activity + self.quiet_time(series).seconds, series.retry_at)

    def set_policy(self, policy: CompletionPolicy) -> None:
        """A new configuration: recompute every deadline."""
        self.policy = policy
        for series in self.series.values():
            series.tags_read = False
            series.rule_trigger = None
            if policy.uses_tags:
                self.read_tags(series)
        self._heap = []
        for series in self.series.values():
            series.scheduled = None
            self.schedule(series, self.deadline(series))

    def study_uids(self) -> set[str]:
        """StudyInstanceUIDs of the waiting series (tags read once per series, when needed)."""
        uids = set()
        for series in self.series.values():
            if not series.tags_read:
                self.read_tags(series)
            if series.study_uid:
                uids.add(series.study_uid)
        return uids

    # --- the heap --------------------------------------------------------------------------
    def schedule(self, series: PendingSeries, when: float) -> None:
        """Look at ``series`` again at ``when`` (earlier entries stay valid only if earlier)."""
        if series.scheduled is not None and series.scheduled <= when:
            return  # the earlier entry comes first; its check reschedules for the later time
        series.scheduled = when
        heapq.heappush(self._heap, (when, next(self._order), series.name))

    def pop_due(self, now: float) -> Iterator[PendingSeries]:
        """Series whose deadline passed, in deadline order (each checked with ``refresh``)."""
        while self._heap and self._heap[0][0] <= now:
            when, _order, name = heapq.heappop(self._heap)
            series = self.series.get(name)
            if series is None or series.scheduled != when:
                continue  # stale entry: the series left or was rescheduled
            series.scheduled = None
            yield series

    def next_due(self) -> float | None:
        """The earliest deadline, or None if no series waits."""
        while self._heap:
            when, _order, name = self._heap[0]
            series = self.series.get(name)
            if series is not None and series.scheduled == when:
                return when
            heapq.heappop(self._heap)
        return None
