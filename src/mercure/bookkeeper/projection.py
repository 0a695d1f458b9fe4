"""From events to table rows: what each event means for series, tasks, targets and the rest.

Pure functions, no database: :func:`event_row` gives the row of the raw event, and
:func:`project` reduces a batch of newly stored events to one row per series, task and target
(the database merges those with what it has, by the same rules, in ``ingest``). Services
deliver independently, so events arrive in any order; every rule here is order-free:

- counts add up, first/last times take the minimum/maximum;
- identifiers (patient ID, accession, UIDs) keep the first value known;
- states and the task document take the value of the *latest event by event time*.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mercure.bookkeeper import kinds
from mercure.core.events import Event

Row = dict[str, Any]

_NUL = "\x00"


def clean_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters; SQLite could, but both must agree."""
    return value.replace(_NUL, "\ufffd") if _NUL in value else value


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return clean_text(value if isinstance(value, str) else str(value))


def _time(value: Any, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return default
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return default


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _is_later(new: datetime | None, old: datetime | None) -> bool:
    return new is not None and (old is None or new >= old)


def event_row(event: Event, received_at: datetime) -> Row:
    """The ``events`` row of an event; ``task`` and ``log`` live in their own tables."""
    data = event.data
    stripped = _stripped_keys(event)
    if stripped:
        data = {key: value for key, value in data.items() if key not in stripped}
    return {
        "id": clean_text(event.id),
        "time": event.time,
        "received_at": received_at,
        "service": clean_text(event.service),
        "instance": clean_text(event.instance),
        "kind": clean_text(event.kind),
        "severity": event.severity,
        "task_id": _text(event.task_id),
        "series_uid": _text(event.series_uid),
        "study_uid": _text(event.study_uid),
        "message": clean_text(event.message),
        "data": data,
    }


def _stripped_keys(event: Event) -> tuple[str, ...]:
    # A task document and a module's log are stored once, in their own tables.
    if not event.task_id:
        return ()
    keys: tuple[str, ...] = ("task",) if isinstance(event.data.get("task"), dict) else ()
    if event.kind in kinds.PROCESSING_RUN_KINDS and "log" in event.data:
        keys += ("log",)
    return keys


def audit_row(event: Event) -> Row:
    """The ``audit`` row of an ``audit.<action>`` event."""
    details = dict(event.data)
    return {
        "event_id": clean_text(event.id),
        "time": event.time,
        "user": _text(details.pop("user", None)) or "unknown",
        "action": clean_text(event.kind[len(kinds.AUDIT_PREFIX) :]),
        "object": _text(details.pop("object", None)),
        "remote_address": _text(details.pop("remote_address", None)),
        "message": clean_text(event.message),
        "details": details,
    }


@dataclass
class Projection:
    """The rows one batch of new events adds or changes, one per key."""

    series: dict[str, Row] = field(default_factory=dict)
    tasks: dict[str, Row] = field(default_factory=dict)
    task_rules: set[tuple[str, str]] = field(default_factory=set)
    task_targets: dict[tuple[str, str], Row] = field(default_factory=dict)
    task_versions: list[Row] = field(default_factory=list)
    processing: list[Row] = field(default_factory=list)
    audit: list[Row] = field(default_factory=list)
    event_counts: dict[tuple[datetime, str, str], Row] = field(default_factory=dict)


def project(events: Iterable[Event]) -> Projection:
    """Reduce newly stored events (each id once) to the rows they touch."""
    result = Projection()
    for event in sorted(events, key=lambda e: e.time):
        _count(result.event_counts, event)
        if event.kind == kinds.SERIES_RECEIVED and event.series_uid:
            _merge_series(result.series, _series_row(event))
        if event.kind.startswith(kinds.AUDIT_PREFIX):
            result.audit.append(audit_row(event))
        if event.task_id:
            _project_task_event(result, event)
    return result


def hour_of(time: datetime) -> datetime:
    """The UTC hour a time falls in."""
    return time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _count(counts: dict[tuple[datetime, str, str], Row], event: Event) -> None:
    key = (hour_of(event.time), clean_text(event.kind), event.severity)
    row = counts.get(key)
    if row is None:
        row = counts[key] = {
            "hour": key[0],
            "kind": key[1],
            "severity": key[2],
            "events": 0,
            "instances": 0,
        }
    row["events"] += 1
    if event.kind in kinds.INSTANCE_COUNTING_KINDS:
        row["instances"] += max(_int(event.data.get("instances")) or 0, 0)


# --- series ------------------------------------------------------------------------------
_SERIES_TAGS = {
    "study_uid": "StudyInstanceUID",
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "study_date": "StudyDate",
    "accession": "AccessionNumber",
    "modality": "Modality",
    "series_description": "SeriesDescription",
    "study_description": "StudyDescription",
    "sender_aet": "SenderAET",
    "receiver_aet": "ReceiverAET",
    "sender_address": "SenderAddress",
}
SERIES_IDENTITY = (*_SERIES_TAGS, "patient_name_key")
"""Series columns that keep the first value known."""

_NAME_SEPARATORS = re.compile(r"[\s^=,]+")


def name_key(name: str) -> str:
    """A patient name folded for searching: case and DICOM's separators do not matter.

    ``Doe^John``, ``DOE JOHN`` and ``doe, john`` all give ``doe john``; a search for a prefix
    of the folded name finds it (``doe j``, ``DOE^J``). The components of DICOM's person name
    (``^``) and its groups (``=``: alphabetic, ideographic, phonetic) become single spaces.
    """
    return _NAME_SEPARATORS.sub(" ", unicodedata.normalize("NFKC", name)).strip().casefold()


def _series_row(event: Event) -> Row:
    data = event.data
    tags = _mapping(data.get("tags"))
    assert event.series_uid is not None
    row: Row = {"series_uid": clean_text(event.series_uid)}
    for column, keyword in _SERIES_TAGS.items():
        row[column] = _text(tags.get(keyword))
    row["study_uid"] = row["study_uid"] or _text(event.study_uid)
    row["patient_name_key"] = name_key(row["patient_name"]) if row["patient_name"] else None
    row["instance_count"] = max(_int(data.get("instances")) or 0, 0)
    row["first_received"] = _time(data.get("first_received"), event.time)
    row["last_received"] = _time(data.get("last_received"), event.time)
    row["tags"] = dict(tags)
    return row


def _merge_series(rows: dict[str, Row], new: Row) -> None:
    old = rows.get(new["series_uid"])
    if old is None:
        rows[new["series_uid"]] = new
        return
    for column in SERIES_IDENTITY:
        old[column] = old[column] or new[column]
    old["instance_count"] += new["instance_count"]
    old["first_received"] = min(old["first_received"], new["first_received"])
    old["last_received"] = max(old["last_received"], new["last_received"])
    old["tags"] = old["tags"] or new["tags"]


# --- tasks -------------------------------------------------------------------------------
TASK_IDENTITY = ("parent_id", "series_uid", "study_uid", "patient_id", "accession")
"""Task columns that keep the first value known."""
TASK_DOCUMENT = ("action", "applied_rule", "priority")
"""Task columns taken from the newest task.json version."""


def _new_task(task_id: str, time: datetime) -> Row:
    row: Row = {"task_id": task_id, "created_at": time, "updated_at": time}
    for column in TASK_IDENTITY + TASK_DOCUMENT:
        row[column] = None
    row.update(
        state=kinds.UNKNOWN,
        state_time=None,
        fail_stage=None,
        fail_reason=None,
        fail_time=None,
        document_time=None,
        version_count=0,
    )
    return row


def _project_task_event(result: Projection, event: Event) -> None:
    assert event.task_id is not None
    task_id = clean_text(event.task_id)
    time, data = event.time, event.data
    row = result.tasks.get(task_id)
    if row is None:
        row = result.tasks[task_id] = _new_task(task_id, time)
    row["created_at"] = min(row["created_at"], time)
    row["updated_at"] = max(row["updated_at"], time)
    _first(row, "series_uid", event.series_uid)
    _first(row, "study_uid", event.study_uid)
    _first(row, "parent_id", data.get("parent_id"))

    document = data.get("task")
    if isinstance(document, dict):
        _project_document(result, row, event, document)

    stage = _text(data.get("stage")) or kinds.STAGE_BY_KIND.get(event.kind)
    if stage is None and event.kind == kinds.TASK_CREATED and isinstance(document, dict):
        stage = kinds.STAGE_BY_ACTION.get(str(_info(document).get("action")))
    if stage is not None and _is_later(time, row["state_time"]):
        row["state"], row["state_time"] = stage, time

    if event.kind in kinds.FAILURE_KINDS:
        reason = _text(data.get("reason")) or _text(event.message)
        failed = _text(data.get("fail_stage")) or kinds.FAIL_STAGE_BY_KIND.get(event.kind)
        _fail(row, failed, reason, time)

    target_state = kinds.TARGET_STATE_BY_KIND.get(event.kind)
    target = _text(data.get("target"))
    if target_state is not None and target is not None:
        if event.kind == kinds.DISPATCH_FAILED and (
            data.get("will_retry") or data.get("final") is False
        ):
            target_state = kinds.RETRYING
        reason = _text(data.get("reason")) or _text(event.message)
        _set_target(result, task_id, target, target_state, time, reason)

    if event.kind in kinds.PROCESSING_RUN_KINDS:
        result.processing.append(_processing_row(event, task_id))


def _first(row: Row, column: str, value: Any) -> None:
    if row[column] is None:
        row[column] = _text(value)


def _fail(row: Row, stage: str | None, reason: str | None, time: datetime) -> None:
    if _is_later(time, row["fail_time"]):
        row["fail_stage"], row["fail_reason"], row["fail_time"] = stage, reason, time


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _info(document: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(document.get("info"))


def _project_document(
    result: Projection, row: Row, event: Event, document: Mapping[str, Any]
) -> None:
    task_id, time = row["task_id"], event.time
    result.task_versions.append(
        {
            "event_id": clean_text(event.id),
            "task_id": task_id,
            "time": time,
            "kind": clean_text(event.kind),
            "document": document,
        }
    )
    row["version_count"] += 1
    info = _info(document)
    uid_type = info.get("uid_type", "series")
    _first(row, "series_uid" if uid_type == "series" else "study_uid", info.get("uid"))
    study = document.get("study")
    if isinstance(study, dict):
        _first(row, "study_uid", study.get("study_uid"))
    _first(row, "patient_id", info.get("mrn"))
    _first(row, "accession", info.get("acc"))
    if _is_later(time, row["document_time"]):
        row["document_time"] = time
        row["action"] = _text(info.get("action"))
        row["applied_rule"] = _text(info.get("applied_rule"))
        row["priority"] = _text(info.get("priority"))
    if info.get("reason") or info.get("fail_stage"):
        _fail(row, _text(info.get("fail_stage")), _text(info.get("reason")), time)

    rules = info.get("triggered_rules")
    names: Sequence[Any] = list(rules) if isinstance(rules, (dict, list)) else []
    for name in [*names, info.get("applied_rule")]:
        if name:
            result.task_rules.add((task_id, clean_text(str(name))))

    dispatch = document.get("dispatch")
    if isinstance(dispatch, dict):
        statuses = _mapping(dispatch.get("status"))
        target_names = dispatch.get("target_name") or []
        if isinstance(target_names, str):
            target_names = [target_names]
        if not isinstance(target_names, list):
            target_names = []
        for name in [*target_names, *statuses]:
            state = _text(_mapping(statuses.get(name)).get("state")) or "waiting"
            _set_target(result, task_id, clean_text(str(name)), state, time, None)


def _set_target(
    result: Projection, task_id: str, target: str, state: str, time: datetime, reason: str | None
) -> None:
    key = (task_id, target)
    old = result.task_targets.get(key)
    if old is None or _is_later(time, old["state_time"]):
        result.task_targets[key] = {
            "task_id": task_id,
            "target": target,
            "state": state,
            "state_time": time,
            "reason": reason,
        }


def _processing_row(event: Event, task_id: str) -> Row:
    data = event.data
    exit_code = _int(data.get("exit_code"))
    success = data.get("success")
    result = data.get("result")
    return {
        "event_id": clean_text(event.id),
        "task_id": task_id,
        "module": _text(data.get("module")) or "unknown",
        "started_at": _time(data.get("started_at"), event.time) if data.get("started_at") else None,
        "ended_at": event.time,
        "exit_code": exit_code,
        "success": bool(success) if success is not None else exit_code == 0,
        "log": clean_text(str(data.get("log") or "")),
        "result": result if isinstance(result, (dict, list)) else None,
    }
