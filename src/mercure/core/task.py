"""``task.json``: the document that travels with a task's DICOM files from stage to stage.

Field names follow mercure's ``task.json`` where the meaning is the same, so that mercure
processing modules read it unchanged. ``schema_version`` lets later versions migrate old files.
Unknown fields are kept (a module may add its own), and nothing is ever rewritten in place:
:func:`write_task` replaces the file atomically.

Both ways with mercure (docs/modules.md, "task.json"): a task without study or dispatch part is
written with ``{}`` there, as mercure writes it (the Python side keeps ``None``), and a task.json
that mercure wrote is read as it is: ``process`` as one object or a list, ``{}`` parts,
``info.triggered_rules`` as a rule name, ``dispatch.target_name`` as a string,
``next_retry_at`` as a Unix time (``0``: none), times as ``"%Y-%m-%d %H:%M:%S"`` (read as UTC).
:func:`module_document` gives the task as a module sees it: only the fields mercure's own Task
model has, in the types it has.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)

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


MERCURE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How mercure writes the times of a study task (local time there; UTC here)."""


def _as_utc(value: datetime) -> datetime:
    # mercure writes naive times; comparing them with ours needs a zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _epoch_or_time(value: Any) -> Any:
    # mercure writes next_retry_at as a Unix time, 0 for "not set".
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None if value <= 0 else datetime.fromtimestamp(value, UTC)
    return value


Time = Annotated[datetime, AfterValidator(_as_utc)]
"""A time read from task.json: ISO 8601 or mercure's format; naive means UTC."""
RetryTime = Annotated[Time | None, BeforeValidator(_epoch_or_time)]
"""A retry time: also mercure's Unix time (0 or less: none)."""


def _rule_names(value: Any) -> Any:
    # mercure writes a study task's triggered_rules as the one rule's name.
    if isinstance(value, str):
        return {value: True} if value else {}
    if isinstance(value, list):
        return {str(name): True for name in value}
    return value


def _name_list(value: Any) -> Any:
    # mercure writes a single target name as a string.
    if isinstance(value, str):
        return [value] if value else []
    return value


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
    triggered_rules: Annotated[dict[str, bool], BeforeValidator(_rule_names)] = Field(
        default_factory=dict
    )
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
    mercure_server: str | None = None
    device_serial_number: str | None = None
    fail_stage: str | None = None
    reason: str | None = None


class TargetStatus(_Part):
    """Delivery state of one target of the task."""

    state: Literal["waiting", "complete", "error"] = "waiting"
    time: Time | None = None
    retries: int = 0
    next_retry_at: RetryTime = None
    reason: str | None = None
    instances_sent: int = 0
    bytes_sent: int = 0


class TaskDispatch(_Part):
    """Where the task goes, and how far delivery got per target."""

    target_name: Annotated[list[str], BeforeValidator(_name_list)] = Field(default_factory=list)
    status: dict[str, TargetStatus] = Field(default_factory=dict)
    retries: Annotated[int, BeforeValidator(lambda value: value or 0)] = 0
    next_retry_at: RetryTime = None
    series_uid: str | None = None


class TaskProcessing(_Part):
    """One processing module to run, with its merged settings."""

    module_name: str
    settings: dict[str, Any] = Field(default_factory=dict)
    retain_input_images: bool = False
    output: dict[str, Any] | None = None
    module_config: dict[str, Any] | None = Field(
        None, description="The module's configuration as mercure writes it (for modules)."
    )


def _none_as_list(value: Any) -> Any:
    return [] if value is None else value


class TaskStudy(_Part):
    """For study-level tasks: the series collected so far and the completion trigger."""

    study_uid: str
    complete_trigger: Literal["timeout", "received_series"] = "timeout"
    complete_required_series: str = ""
    creation_time: Time = Field(default_factory=utcnow)
    last_receive_time: Time = Field(default_factory=utcnow)
    received_series: Annotated[list[str], BeforeValidator(_none_as_list)] = Field(
        default_factory=list
    )
    received_series_uid: Annotated[list[str], BeforeValidator(_none_as_list)] = Field(
        default_factory=list
    )
    complete_force: bool = False
    complete_force_action: Literal["discard", "proceed", "ignore"] = "proceed"
    retrieve_job: str | None = None
    """The retrieve job whose series started the study: its end completes the study."""


class Task(_Part):
    """The content of ``task.json``."""

    schema_version: int = SCHEMA_VERSION
    id: str
    info: TaskInfo
    dispatch: TaskDispatch | None = None
    process: list[TaskProcessing] = Field(default_factory=list)
    study: TaskStudy | None = None
    nomatch: bool = False
    created_at: Time = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _read_mercure_shapes(cls, document: Any) -> Any:
        """``{}`` for "no such part" and ``process`` as one object, as mercure writes them."""
        if not isinstance(document, dict):
            return document
        document = dict(document)
        for part in ("dispatch", "study"):
            if document.get(part) == {}:
                document[part] = None
        process = document.get("process")
        if isinstance(process, dict):
            document["process"] = [process] if process else []
        elif process is None and "process" in document:
            document["process"] = []
        return document

    @field_serializer("dispatch", "study")
    def _empty_as_object(self, part: _Part | None) -> Any:
        # mercure writes {} for a part a task does not have; modules rely on it.
        return {} if part is None else part


MODULE_TASK_FIELDS = ("id", "info", "dispatch", "process", "study", "nomad_info")
"""The fields of mercure's Task model (it forbids any other at the top level)."""
_MERCURE_TEXT_INFO = ("mrn", "acc", "sender_address", "mercure_version", "mercure_appliance")


def module_document(
    task: Task, processing: TaskProcessing, module_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The task as a module sees it: mercure's Task model, field for field.

    Only the top-level fields mercure's model has (it forbids others), ``process`` as the one
    object of the module that runs, ``{}`` for a part the task lacks, text where mercure has
    text (``""`` for a value we do not know), times in mercure's format and retry times as Unix
    times. Our own additions inside the parts stay (mercure's parts ignore unknown fields).
    """
    document = task.model_dump(mode="json")
    info = document["info"]
    for name in _MERCURE_TEXT_INFO:
        if info.get(name) is None:
            info[name] = ""
    if not info.get("mercure_server"):
        info["mercure_server"] = socket.gethostname()
    if task.dispatch is not None:
        dispatch = document["dispatch"]
        names = task.dispatch.target_name
        dispatch["target_name"] = names[0] if len(names) == 1 else names
        retry = task.dispatch.next_retry_at
        dispatch["next_retry_at"] = retry.timestamp() if retry is not None else 0
        if dispatch.get("series_uid") is None and task.info.uid_type == "series":
            dispatch["series_uid"] = task.info.uid
    if task.study is not None:
        study = document["study"]
        study["creation_time"] = task.study.creation_time.strftime(MERCURE_TIME_FORMAT)
        study["last_receive_time"] = task.study.last_receive_time.strftime(MERCURE_TIME_FORMAT)
    process = processing.model_dump(mode="json")
    if module_config is not None:
        process["module_config"] = module_config
    document["process"] = process
    document["nomad_info"] = None
    return {name: document[name] for name in MODULE_TASK_FIELDS}


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
