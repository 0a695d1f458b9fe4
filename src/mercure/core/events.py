"""Events: what services tell the bookkeeper, written first to a durable local outbox.

A service never blocks on the bookkeeper and never loses an event because it is down: each
event is appended to the service's own outbox folder (``outbox/<service>@<instance>/``) and
delivered from there in batches. The outbox is a sequence of segment files of JSON lines; the
segment being written is ``<seq>.open`` and is sealed by renaming it to ``<seq>.jsonl``, so a
reader only ever reads complete files. It is bounded on disk: past ``max_bytes`` the oldest
sealed segments are dropped and the loss is counted in ``dropped.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from mercure.core.atomic import atomic_write_json, fsync_dir
from mercure.core.clock import utcnow
from mercure.core.masking import scrub, scrub_data

log = logging.getLogger(__name__)

Severity = Literal["debug", "info", "warning", "error", "critical"]

SEGMENT_BYTES = 1 << 20
"""A segment is sealed when it grows past this size (or when asked)."""

TAP_ENV = "MERCURE_OUTBOX_TAP"
"""For tests: a folder where every new segment is also hard-linked as it is created, so that a
test reads every event any service wrote, delivered (and deleted) or not, without racing the
delivery (:class:`mercure.testing.installation.OutboxRecorder`)."""

ADOPT_INTERVAL = 5.0
"""Seconds between looks for dead outboxes of the same name (:meth:`Outbox.adopt_orphans`)."""


class Event(BaseModel):
    """One event for the bookkeeper. ``id`` makes delivery idempotent."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    time: datetime = Field(default_factory=utcnow)
    service: str
    instance: str = ""
    kind: str = Field(description="Dotted kind, e.g. 'service.boot', 'task.dispatch.begin'.")
    severity: Severity = "info"
    task_id: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class Outbox:
    """The durable, bounded, append-only event outbox of one service process."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        max_bytes: int = 256 << 20,
        fsync: bool = False,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.name = name
        self.folder, lock_fd = _own_folder(root, name)
        self._lock_fd: int | None = lock_fd
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._mutex = threading.Lock()
        tap = os.environ.get(TAP_ENV)
        self._tap = Path(tap) if tap else None
        self._fd: int | None = None
        self._size = 0
        self._seq = self._last_sequence()
        self._seal_leftovers()
        self._adopted_at = time.monotonic()
        self.adopt_orphans()

    def _last_sequence(self) -> int:
        numbers = [int(p.name.split(".")[0]) for p in self._segment_files()]
        return max(numbers, default=0)

    def _segment_files(self) -> list[Path]:
        return sorted(
            p for p in self.folder.iterdir() if p.suffix in (".open", ".jsonl") and p.stem.isdigit()
        )

    def _seal_leftovers(self) -> None:
        # A previous process of this outbox died with a segment open: it is complete up to its
        # last whole line, so seal it as it is.
        for path in self._segment_files():
            if path.suffix == ".open":
                os.replace(path, path.with_suffix(".jsonl"))

    def adopt_orphans(self) -> int:
        """Take over the segments of dead outboxes of the same name; how many were moved.

        A process whose folder ``<name>`` is held by a live twin writes to ``<name>.<pid>``.
        When such a process dies, or the holder of ``<name>`` dies while this process runs in
        a twin folder, nobody would deliver what is left there: a live process of the same
        name moves it into its own folder. A folder is dead when its lock is free (the
        kernel releases a process's locks when it dies), so a live twin is never touched.
        """
        moved = 0
        for folder in sorted(self.root.iterdir()):
            if folder == self.folder or not _same_outbox(folder.name, self.name):
                continue
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process lives
                moved += self._take_segments(folder)
                if folder.name != self.name:
                    with contextlib.suppress(OSError):  # not empty: something set aside
                        folder.rmdir()
            finally:
                os.close(fd)
        if moved:
            fsync_dir(self.folder)
            log.info(
                "event outbox %s took over %d segments of stopped processes", self.folder, moved
            )
        return moved

    def _take_segments(self, folder: Path) -> int:
        segments = sorted(
            p for p in folder.iterdir() if p.suffix in (".open", ".jsonl") and p.stem.isdigit()
        )
        with self._mutex:
            for path in segments:
                target = self.folder / f"{path.stem}.jsonl"
                if target.exists() or target.with_suffix(".open").exists():
                    self._seq = max(self._seq + 1, time.time_ns() // 1000)
                    target = self.folder / f"{self._seq:020d}.jsonl"
                # An open segment of a dead process is complete up to its last whole line.
                os.replace(path, target)
            dropped = folder / "dropped.json"
            if dropped.exists():
                theirs = json.loads(dropped.read_text())
                counts = self.dropped()
                counts["events"] += int(theirs["events"])
                counts["segments"] += int(theirs["segments"])
                atomic_write_json(self.folder / "dropped.json", counts)
                dropped.unlink()
        return len(segments)

    def append(self, event: Event) -> None:
        """Append one event durably (one ``write`` of one line)."""
        line = (event.model_dump_json() + "\n").encode("utf-8")
        with self._mutex:
            if self._fd is None:
                # Never reuse a number, also across restarts (a set-aside ``<seq>.rejected``
                # must not be overwritten): microseconds since the epoch, always increasing.
                self._seq = max(self._seq + 1, time.time_ns() // 1000)
                path = self.folder / _segment_name(self._seq)
                self._fd = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
                )
                self._size = 0
                if self._tap is not None:
                    self._tap_segment(self._tap, path, self._fd)
            os.write(self._fd, line)
            if self.fsync:
                os.fsync(self._fd)
            self._size += len(line)
            if self._size >= self.segment_bytes:
                self._seal_locked()

    def _tap_segment(self, tap: Path, path: Path, fd: int) -> None:
        # Named by outbox, sequence and inode: unique although several processes share a tap.
        name = f"{self.folder.name}--{path.stem}--{os.fstat(fd).st_ino}"
        os.link(path, tap / name)

    def seal(self) -> None:
        """Seal the open segment so that it can be delivered."""
        with self._mutex:
            self._seal_locked()

    def _seal_locked(self) -> None:
        if self._fd is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        path = self.folder / _segment_name(self._seq)
        os.replace(path, path.with_suffix(".jsonl"))
        self._enforce_bound()

    def _enforce_bound(self) -> None:
        sealed = [p for p in self._segment_files() if p.suffix == ".jsonl"]
        total = sum(p.stat().st_size for p in sealed)
        dropped_segments, dropped_events = 0, 0
        while sealed and total > self.max_bytes:
            oldest = sealed.pop(0)
            total -= oldest.stat().st_size
            dropped_events += sum(1 for _ in read_segment(oldest))
            oldest.unlink()
            dropped_segments += 1
        if dropped_segments:
            counts = self.dropped()
            counts["events"] += dropped_events
            counts["segments"] += dropped_segments
            atomic_write_json(self.folder / "dropped.json", counts)
            log.warning(
                "event outbox %s is over its limit: dropped %d oldest events",
                self.folder,
                dropped_events,
            )

    def dropped(self) -> dict[str, int]:
        """How many events and segments were dropped because the outbox was full."""
        try:
            counts = json.loads((self.folder / "dropped.json").read_text())
        except FileNotFoundError:
            return {"events": 0, "segments": 0}
        return {"events": int(counts["events"]), "segments": int(counts["segments"])}

    def sealed_segments(self) -> list[Path]:
        """Sealed segments, oldest first, ready for delivery (dead twins' included)."""
        if time.monotonic() - self._adopted_at >= ADOPT_INTERVAL:
            self._adopted_at = time.monotonic()
            self.adopt_orphans()
        return [p for p in self._segment_files() if p.suffix == ".jsonl"]

    def acknowledge(self, segment: Path) -> None:
        """Delete a segment once the bookkeeper confirmed every event in it."""
        segment.unlink(missing_ok=True)
        fsync_dir(self.folder)

    def close(self) -> None:
        """Seal what was written and give up the outbox folder."""
        self.seal()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _segment_name(sequence: int) -> str:
    # Fixed width, so that names sort like their numbers.
    return f"{sequence:020d}.open"


def read_segment(path: Path) -> Iterator[Event]:
    """The events of a segment; a torn last line (a writer killed mid-write) is skipped."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                log.warning("%s:%d: incomplete last event skipped", path, number)
                return
            try:
                yield Event.model_validate_json(line)
            except ValidationError:
                log.warning("%s:%d: unreadable event skipped", path, number)


def _same_outbox(folder_name: str, name: str) -> bool:
    """Whether ``folder_name`` is ``name`` or a twin's ``name.<pid>``."""
    if folder_name == name:
        return True
    prefix, _, pid = folder_name.rpartition(".")
    return prefix == name and pid.isdigit()


def _own_folder(root: Path, name: str) -> tuple[Path, int]:
    """Take an outbox folder for this process: ``name``, or ``name.<pid>`` if it is in use."""
    for candidate in (name, f"{name}.{os.getpid()}"):
        folder = root / candidate
        folder.mkdir(exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return folder, fd
    raise RuntimeError(f"no free outbox folder for {name} under {root}")


class EventClient:
    """What services call to emit events: fills in who and when, appends to the outbox."""

    def __init__(self, outbox: Outbox, service: str, instance: str | None = None) -> None:
        self.outbox = outbox
        self.service = service
        self.instance = instance or socket.gethostname()

    def emit(
        self,
        kind: str,
        *,
        severity: Severity = "info",
        message: str = "",
        task_id: str | None = None,
        series_uid: str | None = None,
        study_uid: str | None = None,
        time: datetime | None = None,
        **data: Any,
    ) -> Event:
        """Record an event; never raises for a bookkeeper that is down (it is not contacted).

        Message and data are scrubbed of secrets (:mod:`mercure.core.masking`) first.

        ``time`` is when it happened, if not now: e.g. when a task was created, for an event
        written just after the task became visible to the next service.
        """
        event = Event(
            service=self.service,
            instance=self.instance,
            kind=kind,
            severity=severity,
            message=scrub(message),
            task_id=task_id,
            series_uid=series_uid,
            study_uid=study_uid,
            data=scrub_data(data),
            **({"time": time} if time is not None else {}),
        )
        self.outbox.append(event)
        return event
