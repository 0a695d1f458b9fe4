"""The events the router emits, in one place (the bookkeeper's contract: bookkeeper/kinds.py).

Every event about a task carries ``data["task"]`` (the whole task.json as written) and
``data["stage"]`` (the stage folder the task is in afterwards), so the bookkeeper can keep each
version of the document and the task's state.

========================  ==================================================================
kind                      when
========================  ==================================================================
``series.received``       a complete series, for the bookkeeper's series table (data: tags,
                          instances, first_received, last_received)
``series.complete``       a series was claimed as complete (data: instances, quiet_time,
                          completed_by: the setting that decided, e.g. ``release (default)``,
                          retrieve_job: the retrieve job that fetched it, or null)
``rule.error``            a rule failed while running for a series; it counted as false
``task.created``          a task reached its first stage (``studies`` for a new study)
``task.update``           a series joined a study (stage ``studies``), or a study moved on
``series.discarded``      a series went to ``discard/`` (data: reason, rule)
``task.discarded``        a study was discarded when forced complete
``rule.notification``     a notification rule fired (data: rule)
``series.empty``          a series folder without instances was removed
========================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from mercure.core.datafolder import Stage
from mercure.core.events import EventClient
from mercure.core.studies import report_study_moved
from mercure.core.task import Task, event_uids


def _document(task: Task) -> dict[str, object]:
    return task.model_dump(mode="json")


def series_received(
    events: EventClient,
    series_uid: str,
    tags: Mapping[str, str],
    *,
    instances: int,
    first_received: float | None,
    last_received: float | None,
) -> None:
    """A complete series as the bookkeeper records it (tags of its first instance, counts)."""
    events.emit(
        "series.received",
        series_uid=series_uid,
        study_uid=tags.get("StudyInstanceUID") or None,
        message=f"series of {instances} instances received",
        tags=dict(tags),
        instances=instances,
        first_received=_moment(first_received),
        last_received=_moment(last_received),
    )


def _moment(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def series_complete(
    events: EventClient,
    series_uid: str,
    study_uid: str | None,
    *,
    instances: int,
    quiet_time: float,
    completed_by: str,
    retrieve_job: str | None = None,
) -> None:
    """A series was claimed as complete (``retrieve_job``: the job that fetched it)."""
    events.emit(
        "series.complete",
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"series complete ({instances} instances, {completed_by})",
        instances=instances,
        quiet_time=quiet_time,
        completed_by=completed_by,
        retrieve_job=retrieve_job,
    )


def rule_error(events: EventClient, series_uid: str, rule: str, reason: str) -> None:
    """A rule failed while running (it counted as false)."""
    events.emit(
        "rule.error",
        severity="warning",
        series_uid=series_uid,
        message=f"rule '{rule}' failed and counts as false: {reason}",
        rule=rule,
        reason=reason,
    )


def task_created(
    events: EventClient, task: Task, stage: Stage, *, study_uid: str | None = None
) -> None:
    """A task reached its first stage."""
    series_uid, task_study = event_uids(task)
    events.emit(
        "task.created",
        task_id=task.id,
        series_uid=series_uid,
        study_uid=study_uid or task_study,
        message=f"{task.info.action} task created in {stage.value}",
        # The next service may report on the task before this line runs: date it to its making.
        time=task.created_at,
        task=_document(task),
        stage=stage.value,
    )


def study_updated(events: EventClient, task: Task, series_uid: str) -> None:
    """A series joined a study that was already collecting."""
    count = len(task.study.received_series_uid) if task.study else 0
    events.emit(
        "task.update",
        task_id=task.id,
        study_uid=task.info.uid,
        series_uid=series_uid,
        message=f"series added to study ({count} series)",
        task=_document(task),
        stage=Stage.STUDIES.value,
    )


def study_moved(events: EventClient, task: Task, stage: Stage, path: Path, reason: str) -> None:
    """A collected study is complete and moved on (or discarded): one report for every way
    a study completes (:func:`mercure.core.studies.report_study_moved`)."""
    report_study_moved(events, task, stage, path, reason)


def series_discarded(events: EventClient, task: Task) -> None:
    """A series went to discard/."""
    events.emit(
        "series.discarded",
        task_id=task.id,
        series_uid=task.info.uid,
        message=task.info.reason or "discarded",
        reason=task.info.reason,
        rule=task.info.applied_rule,
        stage=Stage.DISCARD.value,
    )


def notification(
    events: EventClient, rule: str, series_uid: str | None, study_uid: str | None
) -> None:
    """A notification rule fired."""
    events.emit(
        "rule.notification",
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"rule '{rule}' fired",
        rule=rule,
    )


def series_empty(events: EventClient, series_uid: str) -> None:
    """A series folder without instances was removed."""
    events.emit(
        "series.empty",
        severity="warning",
        series_uid=series_uid,
        message="series folder without instances removed",
    )
