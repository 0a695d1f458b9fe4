"""Series that a retrieve job fetches, as the router sees them: the marks, kept in memory.

The retriever writes one mark per series in ``retrieve/series/`` (the contract is
:mod:`mercure.core.retrievemarks`). The router asks about a mark whenever it computes a
series' deadline and whenever it judges a study, so it keeps them all in a dict instead of
opening a file each time: read in full at start-up and at every rescan (the safety net), and
one file at a time when inotify reports that a mark was written or removed.

A mark counts only while its job folder exists (``active``): a deleted job's series fall back
to their quiet time, and its studies to their usual completion.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from mercure.core.datafolder import DataFolder, is_visible
from mercure.core.retrievemarks import (
    RetrieveMark,
    job_dir,
    marks_dir,
    read_mark,
    remove_mark,
)

log = logging.getLogger(__name__)

MARK_SUFFIX = ".json"


def series_of_mark_file(name: str) -> str | None:
    """The SeriesInstanceUID a file name in ``retrieve/series/`` is the mark of, if any."""
    if not is_visible(name) or not name.endswith(MARK_SUFFIX):
        return None
    return name[: -len(MARK_SUFFIX)] or None


class MarkIndex:
    """Every mark in ``retrieve/series/``, by SeriesInstanceUID, and by (job, study)."""

    def __init__(self, data: DataFolder) -> None:
        self.data = data
        self.marks: dict[str, RetrieveMark] = {}
        self._by_study: dict[tuple[str, str], set[str]] = {}

    def __len__(self) -> int:
        return len(self.marks)

    def sync(self) -> set[str]:
        """Read every mark again; the series whose mark appeared, changed or went away."""
        found: dict[str, RetrieveMark] = {}
        try:
            entries = list(os.scandir(marks_dir(self.data)))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            series_uid = series_of_mark_file(entry.name)
            if series_uid is None:
                continue
            mark = read_mark(self.data, series_uid)
            if mark is not None:
                found[series_uid] = mark
        changed = {
            uid for uid in found.keys() | self.marks.keys() if found.get(uid) != self.marks.get(uid)
        }
        for series_uid in changed:
            self._set(series_uid, found.get(series_uid))
        return changed

    def reload(self, series_uid: str) -> tuple[RetrieveMark | None, RetrieveMark | None]:
        """Read one mark again (inotify said it changed); (before, now)."""
        before = self.marks.get(series_uid)
        now = read_mark(self.data, series_uid)
        self._set(series_uid, now)
        return before, now

    def get(self, series_uid: str) -> RetrieveMark | None:
        """The mark of a series, whether or not its job still exists."""
        return self.marks.get(series_uid)

    def active(self, series_uid: str) -> RetrieveMark | None:
        """The mark of a series if its job folder exists (one ``stat``), else None."""
        mark = self.marks.get(series_uid)
        if mark is None or not self.job_exists(mark.job):
            return None
        return mark

    def job_exists(self, job: str) -> bool:
        """Whether the folder of retrieve job ``job`` exists."""
        return job_dir(self.data, job).is_dir()

    def taken(self, series_uid: str) -> RetrieveMark | None:
        """The router took the series: its mark has had its effect, remove it; the mark."""
        mark = self.marks.get(series_uid)
        remove_mark(self.data, series_uid)
        self._set(series_uid, None)
        return mark

    def series_of_job(self, job: str) -> list[str]:
        """SeriesInstanceUIDs with a mark of ``job``."""
        return [uid for uid, mark in self.marks.items() if mark.job == job]

    def study_pending(self, job: str, study_uid: str, waiting: Callable[[str], bool]) -> bool:
        """Whether retrieve job ``job`` still owes study ``study_uid`` a series.

        It does while one of its marks for the study is not complete, or is complete but its
        series still ``waiting`` (in ``incoming/``, not yet taken). A complete mark without a
        series is one the source listed that never came: the retrieve ended, nothing to wait
        for.
        """
        for series_uid in self._by_study.get((job, study_uid), ()):
            mark = self.marks[series_uid]
            if not mark.complete or waiting(series_uid):
                return True
        return False

    def _set(self, series_uid: str, mark: RetrieveMark | None) -> None:
        old = self.marks.pop(series_uid, None)
        if old is not None:
            members = self._by_study.get((old.job, old.study))
            if members is not None:
                members.discard(series_uid)
                if not members:
                    del self._by_study[(old.job, old.study)]
        if mark is not None:
            self.marks[series_uid] = mark
            self._by_study.setdefault((mark.job, mark.study), set()).add(series_uid)
