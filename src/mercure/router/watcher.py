"""inotify on ``incoming/`` and on every series folder in it, translated into router calls.

One watch on ``incoming/`` reports series folders appearing and leaving; one watch per series
folder reports instances renamed in (``<sop>.dcm``), journal appends and ``tags.json``. A
batch of events is coalesced per series before the router hears of it, so a receiver storing
a thousand instances a second costs the router a few calls per wake-up, not thousands.

Two more watches serve retrieve jobs (:mod:`mercure.router.retrieved`): ``retrieve/series/``
reports marks written (renamed into place) or removed, ``retrieve/jobs/`` reports a job folder
removed (its marks stop counting). Without them (the folders missing) the rescan still reads
every mark.

When the kernel's watch limit is reached (``fs.inotify.max_user_watches``), series beyond it
are still routed: their completion is checked from the folder's time at their deadline and
found by the periodic rescan; only completion on release may then wait for the deadline.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Protocol

from mercure.core.datafolder import is_visible
from mercure.core.dicomtags import TAGS_FILE
from mercure.core.inotify import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Inotify,
)
from mercure.router.journal import JOURNAL_FILE
from mercure.router.retrieved import series_of_mark_file

log = logging.getLogger(__name__)

ROOT_MASK = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR
SERIES_MASK = IN_MOVED_TO | IN_MODIFY | IN_ONLYDIR
MARKS_MASK = IN_MOVED_TO | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR
JOBS_MASK = IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR


class Listener(Protocol):
    """What the watcher reports to (the router)."""

    def on_series_created(self, name: str) -> None:
        """A folder appeared in incoming/."""

    def on_series_removed(self, name: str) -> None:
        """A folder left incoming/."""

    def on_instance(self, name: str) -> None:
        """An instance arrived in a series folder."""

    def on_journal(self, name: str) -> None:
        """A series journal grew."""

    def on_tags(self, name: str) -> None:
        """A series' tags.json was written."""

    def on_mark(self, series_uid: str) -> None:
        """The retrieve mark of a series was written or removed."""

    def on_job_removed(self, job: str) -> None:
        """A retrieve job's folder was removed."""

    def request_rescan(self) -> None:
        """Notifications were lost: look at everything again."""


class IncomingWatcher:
    """The inotify watches of ``incoming/`` (implements the tracker's ``SeriesWatcher``)."""

    def __init__(self, incoming: Path, retrieve: Path | None = None) -> None:
        self.incoming = incoming
        self.inotify = Inotify()
        self._root = self.inotify.add_watch(incoming, ROOT_MASK)
        self._marks = self._jobs = -1
        if retrieve is not None:
            try:
                self._marks = self.inotify.add_watch(retrieve / "series", MARKS_MASK)
                self._jobs = self.inotify.add_watch(retrieve / "jobs", JOBS_MASK)
            except OSError as exc:
                log.warning(
                    "cannot watch %s (%s): retrieve marks are read by the rescan", retrieve, exc
                )
        self._names: dict[int, str] = {}
        self._wds: dict[str, int] = {}
        self._limit_reported = False

    def fileno(self) -> int:
        """The descriptor to register with the event loop."""
        return self.inotify.fileno()

    def watch(self, name: str) -> None:
        """Watch the series folder ``incoming/<name>``."""
        if name in self._wds:
            return
        try:
            wd = self.inotify.add_watch(self.incoming / name, SERIES_MASK)
        except OSError as exc:
            if exc.errno == errno.ENOSPC and not self._limit_reported:
                self._limit_reported = True
                log.warning(
                    "inotify watch limit reached (fs.inotify.max_user_watches): further series "
                    "are checked at their deadline and by the rescan"
                )
            elif exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ENOSPC):
                log.warning("cannot watch %s: %s", name, exc)
            return
        self._wds[name] = wd
        self._names[wd] = name

    def unwatch(self, name: str) -> None:
        """Stop watching ``incoming/<name>`` (it was claimed or went away)."""
        wd = self._wds.pop(name, None)
        if wd is None:
            return
        self._names.pop(wd, None)
        self.inotify.remove_watch(wd)

    @property
    def watched(self) -> int:
        """Number of series folders watched."""
        return len(self._wds)

    def dispatch(self, listener: Listener) -> int:
        """Read every pending event and report it, coalesced per series; the event count."""
        events = self.inotify.read_events()
        instances: set[str] = set()
        journals: set[str] = set()
        tags: set[str] = set()
        marks: set[str] = set()
        jobs_gone: set[str] = set()
        for event in events:
            if event.mask & IN_Q_OVERFLOW:
                log.warning("inotify queue overflowed: rescanning incoming/")
                listener.request_rescan()
                continue
            if event.wd == self._marks:
                series_uid = series_of_mark_file(event.name)
                if series_uid is not None:
                    marks.add(series_uid)
                continue
            if event.wd == self._jobs:
                if event.mask & IN_ISDIR and is_visible(event.name):
                    jobs_gone.add(event.name)
                continue
            if event.wd == self._root:
                if not is_visible(event.name):
                    continue
                if event.mask & (IN_CREATE | IN_MOVED_TO) and event.mask & IN_ISDIR:
                    listener.on_series_created(event.name)
                elif event.mask & (IN_DELETE | IN_MOVED_FROM):
                    listener.on_series_removed(event.name)
                continue
            name = self._names.get(event.wd)
            if name is None:
                continue  # a folder already claimed: its last events are of no interest
            if event.mask & IN_IGNORED:
                self._wds.pop(name, None)
                self._names.pop(event.wd, None)
            elif event.mask & IN_MOVED_TO:
                if event.name == TAGS_FILE:
                    tags.add(name)
                elif is_visible(event.name):
                    instances.add(name)
            elif event.mask & IN_MODIFY and event.name == JOURNAL_FILE:
                journals.add(name)
        # Marks first: a series that appeared in the same batch is then judged by its mark.
        for job in jobs_gone:
            listener.on_job_removed(job)
        for series_uid in marks:
            listener.on_mark(series_uid)
        for name in instances:
            listener.on_instance(name)
        for name in tags:
            listener.on_tags(name)
        for name in journals:
            listener.on_journal(name)
        return len(events)

    def close(self) -> None:
        """Drop every watch."""
        self.inotify.close()
        self._names.clear()
        self._wds.clear()
