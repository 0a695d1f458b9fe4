"""Placing received instances into ``incoming/<series>/``: the receiver's hot path.

Per instance the receiver creates exactly one file and appends one journal line: the dataset is
streamed into a temporary file (with a File Meta header built without pydicom), the
SeriesInstanceUID is picked out of the stream by an incremental scanner (no parse), the file is
renamed into its series folder and fsynced, its journal line is appended, and only then is the
instance acknowledged. The fsync comes after the rename so that one flush makes both the data and
the new name durable (ext4, XFS and btrfs commit the rename with the file's fsync).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from mercure.core.atomic import atomic_write_json, temp_name_for
from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import EventClient
from mercure.core.ingest.staging import Staging
from mercure.core.ingest.tags import series_tags
from mercure.core.task import ERROR_FILE, Task, TaskInfo, new_task_id, write_task
from mercure.dicomnet.dimse import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    SUCCESS,
)
from mercure.dicomnet.errors import StoreRefused
from mercure.dicomnet.filemeta import build_file_meta
from mercure.dicomnet.handler import StoreContext
from mercure.dicomnet.scanner import (
    SERIES_INSTANCE_UID,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    DatasetScanner,
    new_scanner,
)

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
TAGS = "tags.json"
MAX_HELD_SERIES = 4
"""Series folders one association keeps locked at once; older ones are let go (LRU), so a
long association (a PACS migration) does not keep every series it sent from being routed."""

FLUSH_THREADS = 4
"""Threads that flush while several associations are open: enough for flushes to overlap."""

SCANNED_TAGS = (SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)
"""What the receiver reads from each dataset as it streams by (no other value is parsed)."""

_SAFE_UID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_json_text = json.encoder.encode_basestring_ascii
"""How ``json.dumps`` (``ensure_ascii``) encodes a string, quotes included."""


def uid_problem(uid: str | None, what: str) -> str | None:
    """Why ``uid`` cannot name a file or folder, or None when it can."""
    if not uid:
        return f"{what} is missing"
    if ".." in uid or not _SAFE_UID.match(uid):
        return f"{what} {uid[:80]!r} is not a safe file name"
    return None


def dataset_problem(scanner: DatasetScanner, context: StoreContext) -> tuple[int, str] | None:
    """Why a received dataset must be refused, with its C-STORE status; None to place it.

    As DCMTK's storescp answers: a dataset that is not well formed or lacks its SOP Class or
    SOP Instance UID cannot be understood (0xC000); one whose UIDs differ from the C-STORE
    request's does not match (0xA900). The UIDs must also be safe as file and folder names.
    """
    if scanner.error is not None:
        return CANNOT_UNDERSTAND, f"malformed dataset: {scanner.error}"
    sop_class = scanner.text(SOP_CLASS_UID)
    sop_instance = scanner.text(SOP_INSTANCE_UID)
    if not sop_class or not sop_instance:
        missing = "SOPClassUID" if not sop_class else "SOPInstanceUID"
        return CANNOT_UNDERSTAND, f"{missing} is missing from the dataset"
    if sop_class != context.sop_class_uid:
        return DATASET_DOES_NOT_MATCH_SOP_CLASS, (
            f"SOPClassUID of the dataset {sop_class[:80]!r} differs from the C-STORE "
            f"request's {context.sop_class_uid[:80]!r}"
        )
    if sop_instance != context.sop_instance_uid:
        return DATASET_DOES_NOT_MATCH_SOP_CLASS, (
            f"SOPInstanceUID of the dataset {sop_instance[:80]!r} differs from the C-STORE "
            f"request's {context.sop_instance_uid[:80]!r}"
        )
    problem = uid_problem(scanner.text(SERIES_INSTANCE_UID), "SeriesInstanceUID") or uid_problem(
        context.sop_instance_uid, "SOPInstanceUID"
    )
    return None if problem is None else (CANNOT_UNDERSTAND, problem)


class SeriesSlot:
    """An association's hold on one series folder: a shared lock and the open journal."""

    __slots__ = ("dir_fd", "folder", "inode", "journal_fd", "needs_tags")

    def __init__(self, folder: str, dir_fd: int, journal_fd: int, needs_tags: bool) -> None:
        self.folder = folder
        self.dir_fd = dir_fd
        self.journal_fd = journal_fd
        self.needs_tags = needs_tags
        self.inode = os.fstat(dir_fd).st_ino

    def close(self) -> None:
        """Close the journal and drop the shared lock."""
        os.close(self.journal_fd)
        os.close(self.dir_fd)


@dataclass
class AssociationState:
    """What the receiver keeps per association."""

    key: str
    listener: str
    calling_aet: str
    called_aet: str
    address: str
    slots: OrderedDict[str, SeriesSlot] = field(default_factory=OrderedDict)
    released_series: dict[str, tuple[str, int]] = field(default_factory=dict)
    series_seen: set[str] = field(default_factory=set)
    rejected: int = 0
    journal_fields: str = field(default="", init=False, repr=False)
    """The association's part of each journal line, encoded once (see :func:`journal_line`)."""


def journal_line(
    state: AssociationState, context: StoreContext, stamp: float, size: int, study: str | None
) -> bytes:
    """An instance's journal line: ``json.dumps`` of its record, built without ``json.dumps``.

    The line is written once per instance, and encoding the whole record there cost about a
    sixth of the receiver's Python time per tiny instance. The association's fields are
    encoded once; per instance only the values that change are, each with the same string
    encoder ``json.dumps`` uses, so the bytes are exactly what ``json.dumps(record)`` gives
    (tests compare them).
    """
    fields = state.journal_fields
    if not fields:
        fields = state.journal_fields = json.dumps(
            {
                "calling_aet": state.calling_aet,
                "called_aet": state.called_aet,
                "address": state.address,
                "listener": state.listener,
                "assoc": state.key,
            }
        )[1:-1]
    return (
        f'{{"sop": {_json_text(context.sop_instance_uid)}, {fields}, "time": {stamp!r}, '
        f'"size": {size}, "ts": {_json_text(context.transfer_syntax_uid)}, '
        f'"study": {"null" if study is None else _json_text(study)}}}\n'
    ).encode()


class Flusher:
    """fsync on a few background threads, for when several associations are open.

    Leaner than ``run_in_executor`` (about a fifth less CPU per instance here): requests go on
    a queue, a thread flushes, and the completion comes back to the event loop with one
    ``call_soon_threadsafe``. Several threads, so that the flushes of several associations
    overlap on the disk. The threads start with the first request.
    """

    def __init__(self, threads: int) -> None:
        self._count = threads
        self._queue: queue.SimpleQueue[tuple[int, asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    def flush(self, fd: int) -> asyncio.Future[None]:
        """A future done once ``fd`` is flushed; it carries the OSError if the flush failed.

        The caller keeps ``fd`` open until the future is done.
        """
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._work, name=f"fsync-{i}", daemon=True)
                for i in range(self._count)
            ]
            for thread in self._threads:
                thread.start()
        future = asyncio.get_running_loop().create_future()
        self._queue.put((fd, future))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fd, future = item
            try:
                os.fsync(fd)
            except OSError as exc:
                future.get_loop().call_soon_threadsafe(_settle, future, exc)
            else:
                future.get_loop().call_soon_threadsafe(_settle, future, None)

    def close(self) -> None:
        """Let the threads finish what is queued, then stop them."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []


def _settle(future: asyncio.Future[None], error: OSError | None) -> None:
    if future.done():  # cancelled: the association went away meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class Placer:
    """Places instances of every association of one receiver process."""

    def __init__(
        self, data: DataFolder, staging: Staging, events: EventClient, *, fsync: bool
    ) -> None:
        self.data = data
        self.incoming = str(data.stage(Stage.INCOMING))
        self.staging = staging
        self.events = events
        self.fsync = fsync
        self.flusher = Flusher(FLUSH_THREADS)
        self.associations = 0
        """Associations open right now (across listeners)."""

    def open_sink(self, state: AssociationState, context: StoreContext) -> InstanceSink:
        """A sink that streams one instance to a temporary file."""
        return InstanceSink(self, state, context)

    async def series_slot(self, state: AssociationState, series_uid: str) -> SeriesSlot:
        """The association's hold on ``incoming/<series_uid>/``, creating the folder if needed."""
        slot = state.slots.get(series_uid)
        if slot is not None:
            state.slots.move_to_end(series_uid)
            return slot
        slot = await self._take_series(series_uid)
        state.slots[series_uid] = slot
        state.series_seen.add(series_uid)
        if len(state.slots) > MAX_HELD_SERIES:
            old_uid, old = state.slots.popitem(last=False)
            state.released_series[old_uid] = (old.folder, old.inode)
            old.close()
        return slot

    async def _take_series(self, series_uid: str) -> SeriesSlot:
        folder = f"{self.incoming}/{series_uid}"
        while True:
            created = False
            try:
                os.mkdir(folder)
                created = True
            except FileExistsError:
                pass
            try:
                fd = os.open(folder, _DIR_FLAGS)
            except FileNotFoundError:
                continue  # the router took it between mkdir and open: make a new one
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                # The router holds it for the moment it takes to rename it away.
                os.close(fd)
                await asyncio.sleep(0.005)
                continue
            try:
                same = os.stat(folder).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            journal = os.open(
                f"{folder}/{JOURNAL}", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
            if created:
                self.events.emit("series.first_seen", series_uid=series_uid)
            return SeriesSlot(folder, fd, journal, not os.path.exists(f"{folder}/{TAGS}"))

    def release(self, state: AssociationState, *, released: bool) -> None:
        """End of an association: journal the release per series (if orderly) and let go."""
        now = time.time()
        line = (
            json.dumps(
                {"event": "released", "assoc": state.key, "listener": state.listener, "time": now}
            )
            + "\n"
        ).encode()
        for slot in state.slots.values():
            if released:
                os.write(slot.journal_fd, line)
            slot.close()
        state.slots.clear()
        if released:
            for folder, inode in state.released_series.values():
                self._journal_release_late(folder, inode, line)

    @staticmethod
    def _journal_release_late(folder: str, inode: int, line: bytes) -> None:
        # A series let go earlier: journal the release only into that same folder, not into a
        # new folder of the same series made by a late arrival after the router took it.
        try:
            fd = os.open(folder, _DIR_FLAGS)
        except FileNotFoundError:
            return
        try:
            if os.fstat(fd).st_ino != inode:
                return
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            journal = os.open(f"{folder}/{JOURNAL}", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.write(journal, line)
            os.close(journal)
        except (BlockingIOError, FileNotFoundError):
            return
        finally:
            os.close(fd)

    def write_tags(self, slot: SeriesSlot, path: str, state: AssociationState) -> None:
        """Write the series' tags file from its first instance (once per series)."""
        sender = {
            "SenderAET": state.calling_aet,
            "ReceiverAET": state.called_aet,
            "SenderAddress": state.address,
        }
        try:
            tags = series_tags(Path(path), sender)
        except Exception as exc:
            log.warning("tags of a new series could not be read (%s); router will rebuild", exc)
            return
        _write_once(Path(slot.folder) / TAGS, json.dumps(tags, indent=2, ensure_ascii=False))
        slot.needs_tags = False

    def reject(
        self,
        sink: InstanceSink,
        reason: str,
        series_uid: str | None,
        status: int = CANNOT_UNDERSTAND,
    ) -> int:
        """Keep an instance that cannot be placed in ``error/`` with the reason; ``status``."""
        context = sink.context
        task_id = new_task_id()
        folder = self.data.stage(Stage.ERROR) / task_id
        staging = Path(sink.temp_path).with_suffix(".error")
        staging.mkdir()
        name = (
            context.sop_instance_uid
            if not uid_problem(context.sop_instance_uid, "")
            else "instance"
        )
        os.rename(sink.temp_path, staging / f"{name}.dcm")
        record = {
            "fail_stage": "receive",
            "reason": reason,
            "service": "receiver",
            "time": utcnow().isoformat(),
            "calling_aet": context.calling_aet,
            "called_aet": context.called_aet,
            "address": context.peer_address[0],
        }
        atomic_write_json(staging / ERROR_FILE, record)
        info = TaskInfo(
            action="discard",
            uid=series_uid or "",
            sender_aet=context.calling_aet,
            receiver_aet=context.called_aet,
            sender_address=context.peer_address[0],
            fail_stage="receive",
            reason=reason,
        )
        write_task(staging, Task(id=task_id, info=info))
        os.rename(staging, folder)
        self.events.emit(
            "instance.rejected",
            severity="error",
            message=f"instance from {context.calling_aet} kept in error/{task_id}: {reason}",
            task_id=task_id,
            # An unsafe UID (".receiving", "../x") is no series: it stays in the reason only.
            series_uid=series_uid if not uid_problem(series_uid, "") else None,
            stage=Stage.ERROR.value,
            fail_stage="receive",
            reason=reason,
        )
        log.error(
            "instance from %s not placed (%s); kept as error/%s",
            context.calling_aet,
            reason,
            task_id,
        )
        return status


def _write_once(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` unless it exists, atomically and at most once.

    Several associations, in one receiver process or in several, may each see a series
    without its tags file and each write one from its own first instance. ``link`` puts the
    complete temporary file in place only if the name is free (``replace`` would overwrite), so
    the first writer wins and readers never see the tags change under them.
    """
    temp = temp_name_for(path)
    fd = os.open(temp, _OPEN_FLAGS, 0o644)
    try:
        data = memoryview((text + "\n").encode())
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temp)


class InstanceSink:
    """Streams one instance into a temporary file and places it when complete."""

    __slots__ = ("_fd", "_head", "_placer", "_scanner", "_state", "context", "size", "temp_path")

    def __init__(self, placer: Placer, state: AssociationState, context: StoreContext) -> None:
        self._placer = placer
        self._state = state
        self.context = context
        self.temp_path = placer.staging.new_path()
        try:
            self._fd: int | None = os.open(self.temp_path, _OPEN_FLAGS, 0o644)
        except FileNotFoundError:
            # Someone removed the staging folder under us; make it again rather than fail.
            placer.staging.recreate()
            self._fd = os.open(self.temp_path, _OPEN_FLAGS, 0o644)
        self._scanner = new_scanner(context.transfer_syntax_uid, SCANNED_TAGS, check_structure=True)
        self.size = 0
        # The File Meta goes out with the first dataset bytes, in one system call.
        self._head: bytes | None = build_file_meta(
            context.sop_class_uid,
            context.sop_instance_uid,
            context.transfer_syntax_uid,
            context.calling_aet,
        )

    def _write(self, data: bytes | memoryview, more: memoryview | None = None) -> None:
        """Write ``data`` (then ``more``, gathered into the same call) whole."""
        fd = self._fd
        assert fd is not None
        try:
            if more is None:
                written = os.write(fd, data)
            else:
                written = os.writev(fd, (data, more))
                if written >= len(data):
                    data, written = more, written - len(data)
                else:
                    self._write(memoryview(data)[written:])
                    data, written = more, 0
            while written < len(data):
                data = memoryview(data)[written:]
                written = os.write(fd, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreRefused(OUT_OF_RESOURCES, "disk full while receiving") from exc
            raise

    def write(self, chunk: memoryview) -> None:
        """Append dataset bytes; look for the series UID while it has not been seen."""
        head = self._head
        if head is None:
            self._write(chunk)
        else:
            self._head = None
            self._write(head, chunk)
        self.size += len(chunk)
        scanner = self._scanner
        if not scanner.done:
            scanner.feed(chunk)

    def finish(self) -> int | Awaitable[int]:
        """Place the complete instance; its C-STORE status, or an awaitable of it.

        The common case (the association already holds the series, and fsync runs inline) is
        answered directly, without a task per instance; taking a new series folder, or an fsync
        handed to a thread while other associations are open, is awaited.
        """
        placer = self._placer
        context = self.context
        if self._head is not None:  # no dataset bytes came: the file is its File Meta alone
            self._write(self._head)
            self._head = None
        scanner = self._scanner
        scanner.finish()
        series_uid = scanner.text(SERIES_INSTANCE_UID)
        refusal = dataset_problem(scanner, context)
        if refusal is not None:
            self._close()
            return placer.reject(self, refusal[1], series_uid, refusal[0])
        assert series_uid is not None
        slot = self._state.slots.get(series_uid)
        if slot is None or (placer.fsync and placer.associations > 1):
            return self._finish_later(series_uid)
        self._state.slots.move_to_end(series_uid)
        final = self._rename_into(slot)
        if placer.fsync:
            assert self._fd is not None
            os.fsync(self._fd)
        return self._record(slot, final)

    async def _finish_later(self, series_uid: str) -> int:
        placer = self._placer
        slot = await placer.series_slot(self._state, series_uid)
        final = self._rename_into(slot)
        if placer.fsync:
            fd = self._fd
            assert fd is not None
            if placer.associations > 1:
                # Let other associations go on meanwhile; their flushes then overlap. Alone,
                # the hand-off to a thread would only add latency.
                await placer.flusher.flush(fd)
            else:
                os.fsync(fd)
        return self._record(slot, final)

    def _rename_into(self, slot: SeriesSlot) -> str:
        # The fsync comes after the rename: one flush makes the data and the name durable.
        final = f"{slot.folder}/{self.context.sop_instance_uid}.dcm"
        os.rename(self.temp_path, final)
        return final

    def _record(self, slot: SeriesSlot, final: str) -> int:
        """The instance is durable: close it, journal it, write the series' tags if due."""
        self._close()
        state = self._state
        os.write(
            slot.journal_fd,
            journal_line(
                state,
                self.context,
                time.time(),
                self.size,
                self._scanner.text(STUDY_INSTANCE_UID),
            ),
        )
        if slot.needs_tags:
            self._placer.write_tags(slot, final, state)
        return SUCCESS

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        """The association ended mid-dataset (or placing failed): remove the partial file."""
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)
