"""``task.json``: the document that travels with a task's DICOM files from stage to stage.

Field names follow mercure's ``task.json`` where the meaning is the same, so that mercure
processing modules read it unchanged. ``schema_version`` lets later versions migrate old files.
Unknown fields are kept (a module may add its own), and nothing is ever rewritten in place:
:func:`write_task` replaces the file atomically.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mercure.core.atomic import atomic_write_text, fsync_dir
from mercure.core.clock import time_ordered_id, utcnow
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import TaskError
from mercure.core.masking import scrub
from mercure.core.notifications.triggers import notify_safely

if TYPE_CHECKING:
    from mercure.core.config.models import MercureConfig
    from mercure.core.events import EventClient

TASK_FILE = "task.json"
ERROR_FILE = "error.json"
SCHEMA_VERSION = 1

TASK_STAGES = (Stage.PROCESSING, Stage.OUTGOING, Stage.ERROR, Stage.SUCCESS, Stage.DISCARD)
"""Stages whose entries are tasks named by their id (incoming/ and studies/ hold UIDs)."""

Action = Literal["route", "process", "both", "notification", "discard"]
Priority = Literal["urgent", "normal", "offpeak"]

STAGE_OF_ACTION: dict[str, Stage] = {
    "route": Stage.OUTGOING,
    "process": Stage.PROCESSING,
    "both": Stage.PROCESSING,
    "notification": Stage.SUCCESS,
    "discard": Stage.DISCARD,
}
"""Where a task goes once it exists (or, for a study, once the study is complete)."""


def new_task_id() -> str:
    """A task id that sorts by creation time and is unique across hosts."""
    return time_ordered_id()


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskInfo(_Part):
    """What the task is about and how it came to be."""

    action: Action
    uid: str = Field(description="SeriesInstanceUID or StudyInstanceUID")
    uid_type: Literal["series", "study"] = "series"
    triggered_rules: dict[str, bool] = Field(default_factory=dict)
    applied_rule: str | None = None
    priority: Priority = "normal"
    patient_name: str | None = None
    mrn: str | None = None
    acc: str | None = None
    sender_address: str | None = None
    sender_aet: str | None = None
    receiver_aet: str | None = None
    mercure_version: str | None = None
    mercure_appliance: str | None = None
    fail_stage: str | None = None
    reason: str | None = None


class TargetStatus(_Part):
    """Delivery state of one target of the task."""

    state: Literal["waiting", "complete", "error"] = "waiting"
    time: datetime | None = None
    retries: int = 0
    next_retry_at: datetime | None = None
    reason: str | None = None
    instances_sent: int = 0
    bytes_sent: int = 0


class TaskDispatch(_Part):
    """Where the task goes, and how far delivery got per target."""

    target_name: list[str] = Field(default_factory=list)
    status: dict[str, TargetStatus] = Field(default_factory=dict)
    retries: int = 0
    next_retry_at: datetime | None = None


class TaskProcessing(_Part):
    """One processing module to run, with its merged settings."""

    module_name: str
    settings: dict[str, Any] = Field(default_factory=dict)
    retain_input_images: bool = False
    output: dict[str, Any] | None = None


class TaskStudy(_Part):
    """For study-level tasks: the series collected so far and the completion trigger."""

    study_uid: str
    complete_trigger: Literal["timeout", "received_series"] = "timeout"
    complete_required_series: str = ""
    creation_time: datetime = Field(default_factory=utcnow)
    last_receive_time: datetime = Field(default_factory=utcnow)
    received_series: list[str] = Field(default_factory=list)
    received_series_uid: list[str] = Field(default_factory=list)
    complete_force: bool = False
    complete_force_action: Literal["discard", "proceed", "ignore"] = "proceed"


class Task(_Part):
    """The content of ``task.json``."""

    schema_version: int = SCHEMA_VERSION
    id: str
    info: TaskInfo
    dispatch: TaskDispatch | None = None
    process: list[TaskProcessing] = Field(default_factory=list)
    study: TaskStudy | None = None
    nomatch: bool = False
    created_at: datetime = Field(default_factory=utcnow)


def event_uids(task: Task | None) -> tuple[str | None, str | None]:
    """The (series UID, study UID) of a task for its events: the bookkeeper links by them."""
    if task is None:
        return None, None
    if task.info.uid_type == "study":
        return None, task.info.uid or None
    study = task.study.study_uid if task.study is not None else None
    return task.info.uid or None, study


def check_task_id(task_id: str) -> None:
    """Raise :class:`TaskError` unless ``task_id`` can name a task folder.

    An id given by an operator must not reach outside its stage folder (``../x``) or name a
    hidden work folder (``.deleting-x``): it is one visible path component.
    """
    if (
        not task_id
        or task_id.startswith(".")
        or "/" in task_id
        or "\0" in task_id
        or task_id != task_id.strip()
    ):
        raise TaskError("not a task id (a task folder's name: no '/', not starting with '.')")


def locate_task(data: DataFolder, task_id: str, stages: tuple[Stage, ...] = TASK_STAGES) -> Path:
    """The folder of task ``task_id`` in the first of ``stages`` that has it.

    Raises :class:`TaskError` for an id that is no folder name, or a task in none of them.
    """
    check_task_id(task_id)
    for stage in stages:
        folder = data.stage(stage) / task_id
        if folder.is_dir():
            return folder
    where = ", ".join(f"{stage.value}/" for stage in stages)
    raise TaskError(f"no task {task_id} in {where} of {data.root}")


def read_task(task_dir: Path | str) -> Task:
    """Load ``task.json`` from a task folder; :class:`TaskError` says what is wrong with it."""
    path = Path(task_dir) / TASK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(f"{path}: task.json is missing") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if isinstance(document, dict) and isinstance(document.get("process"), dict):
        # mercure writes a single module as an object; a chain as a list.
        document["process"] = [document["process"]] if document["process"] else []
    try:
        return Task.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise TaskError(f"{path}: {where}: {first['msg']}") from None


def write_task(task_dir: Path | str, task: Task) -> None:
    """Replace ``task.json`` atomically (never rewritten in place).

    The failure reasons in it (``info.reason``, each ``dispatch.status.*.reason``) are scrubbed
    of secrets first, in ``task`` too: they often quote what a peer answered.
    """
    _scrub_reasons(task)
    atomic_write_text(Path(task_dir) / TASK_FILE, task.model_dump_json(indent=2) + "\n")


def _scrub_reasons(task: Task) -> None:
    if task.info.reason is not None:
        task.info.reason = scrub(task.info.reason)
    if task.dispatch is not None:
        for status in task.dispatch.status.values():
            if status.reason is not None:
                status.reason = scrub(status.reason)


def move_task(task_dir: Path | str, data: DataFolder, stage: Stage) -> Path:
    """Move a task folder into ``stage`` with one atomic rename; returns its new path.

    Raises :class:`TaskError` when a task of the same name is already there (nothing moves).
    """
    source = Path(task_dir)
    destination = data.stage(stage) / source.name
    try:
        # os.rename would silently replace an empty destination folder; refuse any.
        if destination.exists():
            raise FileExistsError(destination)
        os.rename(source, destination)
    except FileExistsError:
        raise TaskError(f"cannot move {source.name} to {stage}: it already exists there") from None
    fsync_dir(source.parent)
    fsync_dir(destination.parent)
    return destination


def _record_failure(task_dir: Path, *, stage: str, reason: str, service: str) -> Task | None:
    """Write ``error.json`` and the failure into ``task.json``; the task as it now stands."""
    record = {
        "fail_stage": stage,
        "reason": reason,
        "service": service,
        "time": utcnow().isoformat(),
    }
    atomic_write_text(task_dir / ERROR_FILE, json.dumps(record, indent=2) + "\n")
    try:
        task = read_task(task_dir)
    except TaskError:
        return None  # an unreadable task.json may be why it failed
    task.info.fail_stage = stage
    task.info.reason = reason
    write_task(task_dir, task)
    return task


def fail_task(
    task_dir: Path | str, data: DataFolder, *, stage: str, reason: str, service: str
) -> Path:
    """Record why a task failed (``error.json`` and ``task.json``) and move it to ``error/``.

    The reason is scrubbed of secrets before it is written anywhere.
    """
    task_dir = Path(task_dir)
    _record_failure(task_dir, stage=stage, reason=scrub(reason), service=service)
    return move_task(task_dir, data, Stage.ERROR)


def fail_and_report(
    task_dir: Path | str,
    data: DataFolder,
    events: EventClient,
    *,
    stage: str,
    reason: str,
    service: str,
    kind: str = "task.failed",
    config: MercureConfig | None = None,
) -> Path:
    """:func:`fail_task`, telling the bookkeeper with the task document as it now stands.

    The event is written to the outbox *before* the move: once the task is in ``error/`` no
    service looks at it again, so a process killed between the move and the report would leave
    the bookkeeper without the outcome for good. Killed between the report and the move, the
    task is still in its stage and fails (and is reported) again: a repeated outcome event is
    harmless, the bookkeeper keeps the latest state.

    With ``config``, the task's ``error`` notifications are queued too, also before the move
    (the one place every service fails a task through). A notification that cannot be queued
    does not keep the task from moving to ``error/``.
    """
    task_dir = Path(task_dir)
    reason = scrub(reason)
    task = _record_failure(task_dir, stage=stage, reason=reason, service=service)
    series_uid, study_uid = event_uids(task)
    events.emit(
        kind,
        severity="error",
        task_id=task_dir.name,
        series_uid=series_uid,
        study_uid=study_uid,
        message=reason,
        fail_stage=stage,
        reason=reason,
        stage=Stage.ERROR.value,
        task=task.model_dump(mode="json") if task is not None else None,
    )
    if config is not None and task is not None:
        notify_safely(data, config, task, "error", task_dir=task_dir, events=events)
    return move_task(task_dir, data, Stage.ERROR)
