"""What the Queue and task pages read from the data folder: stage listings and one task.

The folders are the truth (and stay readable while the bookkeeper is down), but a stage may
hold ten thousand tasks: a listing takes the names and modification times of the stage
folders (one ``scandir`` each), sorts them, and reads only the ``task.json`` files of the page
it shows. Filters on what is inside ``task.json`` (rule, target, patient, accession) read
entries newest first until the page is full, at most :data:`SCAN_LIMIT` of them per request;
the page says when that bound cut the search short. An accession search first asks the
bookkeeper which tasks have it and reads only those (and what changed too recently for the
bookkeeper to know). Everything here blocks on the file system: call it in a thread
(``run_in_threadpool``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mercure.core.claims import Claim
from mercure.core.datafolder import DataFolder, Stage, is_visible
from mercure.core.errors import TaskError
from mercure.core.masking import MASK, scrub_data
from mercure.core.task import ERROR_FILE, TASK_STAGES, Task, check_task_id, read_task

LIST_STAGES = (
    Stage.STUDIES,
    Stage.PROCESSING,
    Stage.OUTGOING,
    Stage.ERROR,
    Stage.DISCARD,
    Stage.SUCCESS,
)
"""The stages the Queue page lists, in pipeline order."""
ACTIVE_STAGES = (Stage.STUDIES, Stage.PROCESSING, Stage.OUTGOING, Stage.ERROR)
"""The default view: what is under way and what failed."""
ACTIVE = "active"
PAGE_SIZE = 50
SCAN_LIMIT = 2000
"""task.json files a filtered listing reads at most per request."""
RECENT = 120.0
"""Seconds within which an entry may not be known to the bookkeeper yet (events travel in
batches): such entries stay candidates when the bookkeeper narrows a search."""
AGES = {
    0: "any age",
    300: "older than 5 min",
    3600: "older than 1 hour",
    6 * 3600: "older than 6 hours",
    86400: "older than 1 day",
    7 * 86400: "older than 7 days",
}
"""The age filter's choices: seconds since the entry last changed."""

_SECRET_KEY = re.compile(
    r"pass(word|wd)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|^key$"
    r"|credential|authori[sz]ation|session",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class QueueFilter:
    """What the user asked to see."""

    stage: str = ACTIVE
    rule: str = ""
    target: str = ""
    patient: str = ""
    accession: str = ""
    min_age: int = 0
    start: int = 0

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages in scope."""
        if self.stage == ACTIVE:
            return ACTIVE_STAGES
        return (Stage(self.stage),)

    @property
    def by_content(self) -> bool:
        """Whether a filter needs task.json."""
        return bool(self.rule or self.target or self.patient or self.accession)

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (empty ones left out), with ``changes``."""
        values = {
            "stage": self.stage,
            "rule": self.rule,
            "target": self.target,
            "patient": self.patient,
            "accession": self.accession,
            "min_age": str(self.min_age) if self.min_age else "",
            "start": str(self.start) if self.start else "",
        }
        values.update({k: str(v) if v else "" for k, v in changes.items()})
        return {k: v for k, v in values.items() if v and not (k == "stage" and v == ACTIVE)}


@dataclass(frozen=True)
class TargetProgress:
    """Delivery to one target, as task.json (and the bookkeeper, when it answers) tell it."""

    name: str
    state: str
    instances_sent: int = 0
    instances_total: int = 0
    bytes_sent: int = 0
    retries: int = 0
    next_retry_at: Any = None
    reason: str | None = None
    since: Any = None
    bookkeeper_state: str | None = None
    bookkeeper_reason: str | None = None

    @property
    def tone(self) -> str:
        """good when delivered, bad when failed, warn while retrying."""
        if self.state == "complete":
            return "good"
        if self.state == "error":
            return "bad"
        return "warn" if self.retries else "muted"


@dataclass
class QueueEntry:
    """A task (or a study being collected) in a stage folder."""

    stage: Stage
    name: str
    mtime: float
    task: Task | None = None
    problem: str = ""
    files: int = 0
    busy: bool = False

    @property
    def task_id(self) -> str:
        """The task's id (a study folder is named after its study, its task has an id)."""
        return self.task.id if self.task is not None else self.name

    @property
    def reason(self) -> str:
        """Why it failed or was discarded, if it says."""
        if self.problem:
            return self.problem
        return (self.task.info.reason or "") if self.task is not None else ""

    @property
    def targets(self) -> list[TargetProgress]:
        """Delivery per target from task.json."""
        return target_progress(self.task, self.files)


@dataclass
class QueuePage:
    """One page of a listing."""

    entries: list[QueueEntry]
    total: int
    """Entries in the chosen stages (and age), before content filters."""
    start: int
    next_start: int | None
    scanned: int = 0
    """task.json files read for a content filter."""
    cut_short: bool = False
    """The scan bound stopped a content filter before the end of the stages."""
    narrowed: bool = False
    """The bookkeeper named the candidates (an accession search)."""
    counts: dict[str, int] = field(default_factory=dict)


def _scan(data: DataFolder, stage: Stage) -> list[tuple[float, Stage, str]]:
    folder = data.stage(stage)
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not is_visible(entry.name):
                    continue
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue  # moved on meanwhile
                found.append((mtime, stage, entry.name))
    except FileNotFoundError:
        pass
    return found


def _count_files(folder: Path) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.name.endswith(".dcm") and is_visible(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return 0


def read_entry(data: DataFolder, stage: Stage, name: str, mtime: float) -> QueueEntry:
    """One entry with its task.json (or why it cannot be read), file count, claim."""
    folder = data.stage(stage) / name
    entry = QueueEntry(stage=stage, name=name, mtime=mtime)
    try:
        entry.task = read_task(folder)
    except TaskError as exc:
        entry.problem = str(exc).replace(str(data.root) + "/", "")
    except OSError as exc:
        entry.problem = f"{stage.value}/{name}: cannot read task.json ({exc.strerror})"
    entry.files = _count_files(folder)
    entry.busy = Claim.is_claimed(folder)
    return entry


def matches(entry: QueueEntry, wanted: QueueFilter) -> bool:
    """Whether an entry's task.json fits the content filters."""
    task = entry.task
    if task is None:
        return False
    info = task.info
    if wanted.rule and not (
        info.applied_rule == wanted.rule or info.triggered_rules.get(wanted.rule)
    ):
        return False
    if wanted.target and (task.dispatch is None or wanted.target not in task.dispatch.target_name):
        return False
    if wanted.patient:
        needle = wanted.patient.strip().lower()
        if info.mrn != wanted.patient.strip() and needle not in (info.patient_name or "").lower():
            return False
    return not (wanted.accession and info.acc != wanted.accession.strip())


def list_entries(
    data: DataFolder,
    wanted: QueueFilter,
    now: float,
    *,
    page_size: int = PAGE_SIZE,
    candidates: set[str] | None = None,
) -> QueuePage:
    """A page of the stages' entries, newest first.

    ``candidates``: the task ids that can match the content filters, as the bookkeeper found
    them; only those (and study folders, and entries changed within :data:`RECENT` seconds,
    which the bookkeeper may not know yet) are read.
    """
    names: list[tuple[float, Stage, str]] = []
    for stage in wanted.stages:
        names += _scan(data, stage)
    if wanted.min_age:
        names = [item for item in names if item[0] <= now - wanted.min_age]
    total = len(names)
    if candidates is not None and wanted.by_content:
        names = [
            item
            for item in names
            if item[2] in candidates or item[1] is Stage.STUDIES or item[0] >= now - RECENT
        ]
    names.sort(key=lambda item: (-item[0], item[2]))
    start = max(0, min(wanted.start, len(names)))
    if not wanted.by_content:
        chosen = names[start : start + page_size]
        entries = [read_entry(data, stage, name, mtime) for mtime, stage, name in chosen]
        following = start + page_size
        return QueuePage(entries, len(names), start, following if following < len(names) else None)
    entries = []
    position = start
    scanned = 0
    while position < len(names) and len(entries) < page_size and scanned < SCAN_LIMIT:
        mtime, stage, name = names[position]
        entry = read_entry(data, stage, name, mtime)
        scanned += 1
        position += 1
        if matches(entry, wanted):
            entries.append(entry)
    more = position < len(names)
    return QueuePage(
        entries,
        total,
        start,
        position if more else None,
        scanned=scanned,
        cut_short=more and scanned >= SCAN_LIMIT and len(entries) < page_size,
        narrowed=candidates is not None,
    )


def target_progress(task: Task | None, files: int) -> list[TargetProgress]:
    """Delivery per target from task.json (total: the DICOM files of the task)."""
    if task is None or task.dispatch is None:
        return []
    progress = []
    for name in task.dispatch.target_name:
        status = task.dispatch.status.get(name)
        if status is None:
            progress.append(TargetProgress(name=name, state="waiting", instances_total=files))
            continue
        progress.append(
            TargetProgress(
                name=name,
                state=status.state,
                instances_sent=status.instances_sent,
                instances_total=files,
                bytes_sent=status.bytes_sent,
                retries=status.retries,
                next_retry_at=status.next_retry_at,
                reason=status.reason,
                since=status.time,
            )
        )
    return progress


# --- one task -----------------------------------------------------------------------------
@dataclass
class TaskOnDisk:
    """A task as its folder shows it now."""

    stage: Stage
    folder: Path
    task: Task | None
    problem: str
    files: int
    size: int
    busy: bool
    mtime: float
    error: dict[str, Any] | None
    document: dict[str, Any] | None
    """task.json as it is on disk (secrets still in: mask before showing)."""

    @property
    def name(self) -> str:
        """The folder's name."""
        return self.folder.name


def _study_folder(data: DataFolder, task_id: str) -> Path | None:
    """The study folder whose task has ``task_id`` (studies are named by their UID)."""
    root = data.stage(Stage.STUDIES)
    try:
        names = sorted(n for n in os.listdir(root) if is_visible(n))
    except FileNotFoundError:
        return None
    for name in names:
        if name == task_id:
            return root / name
        try:
            document = json.loads((root / name / "task.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and document.get("id") == task_id:
            return root / name
    return None


def find_task(data: DataFolder, task_id: str) -> TaskOnDisk | None:
    """The task ``task_id`` in whatever stage folder holds it, or None."""
    try:
        check_task_id(task_id)
    except TaskError:
        return None
    folder: Path | None = None
    for stage in TASK_STAGES:
        candidate = data.stage(stage) / task_id
        if candidate.is_dir():
            folder = candidate
            break
    else:
        folder = _study_folder(data, task_id)
    if folder is None:
        return None
    return _read_folder(data, folder)


def _read_folder(data: DataFolder, folder: Path) -> TaskOnDisk | None:
    files = size = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".dcm") and is_visible(entry.name):
                    files += 1
                    with contextlib.suppress(FileNotFoundError):
                        size += entry.stat(follow_symlinks=False).st_size
        mtime = folder.stat().st_mtime
    except FileNotFoundError:
        return None  # moved on while being read: the caller looks again or says so
    task: Task | None = None
    problem = ""
    try:
        task = read_task(folder)
    except TaskError as exc:
        problem = str(exc).replace(str(data.root) + "/", "")
    document = _read_json(folder / "task.json")
    error = _read_json(folder / ERROR_FILE)
    return TaskOnDisk(
        stage=Stage(folder.parent.name),
        folder=folder,
        task=task,
        problem=problem,
        files=files,
        size=size,
        busy=Claim.is_claimed(folder),
        mtime=mtime,
        error=error,
        document=document,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def masked(document: Any) -> Any:
    """A copy of a JSON document safe to show: the value of every key that names a secret
    (password, token, key ...) replaced by ``***``, and every known secret and
    credential-shaped text scrubbed (:mod:`mercure.core.masking`)."""
    if isinstance(document, dict):
        return {
            key: MASK
            if _SECRET_KEY.search(str(key)) and value not in (None, "", [], {})
            else masked(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [masked(item) for item in document]
    return scrub_data(document)


def masked_json(document: Any) -> str:
    """:func:`masked`, pretty-printed."""
    return json.dumps(masked(document), indent=2, ensure_ascii=False, default=str)
