"""Request and response bodies of the bookkeeper's HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from mercure.core.events import Event

MAX_BATCH = 5000
"""Most events one request may carry; the outbox deliverer sends 500."""


class EventBatch(BaseModel):
    """A batch of events from one service's outbox."""

    events: list[Event] = Field(max_length=MAX_BATCH)


class IngestResponse(BaseModel):
    """Every event of the batch is stored now: ``stored`` were new, ``duplicates`` known."""

    stored: int
    duplicates: int


class TargetState(BaseModel):
    """Delivery state of one target of a task."""

    target: str
    state: str = Field(description="waiting, sending, retrying, complete or error")
    state_time: datetime
    reason: str | None = None


class TaskRecord(BaseModel):
    """A task as the bookkeeper knows it."""

    task_id: str
    parent_id: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    patient_id: str | None = None
    accession: str | None = None
    action: str | None = None
    applied_rule: str | None = None
    priority: str | None = None
    state: str = Field(description="The stage folder it is in, `cleaned`, `deleted`, or `unknown`.")
    state_time: datetime | None = None
    fail_stage: str | None = None
    fail_reason: str | None = None
    version_count: int
    created_at: datetime
    updated_at: datetime
    targets: list[TargetState] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)


class TaskPage(BaseModel):
    """A page of tasks, newest first."""

    items: list[TaskRecord]
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")


class TaskVersionInfo(BaseModel):
    """One recorded version of task.json (without the document)."""

    event_id: str
    time: datetime
    kind: str


class TaskVersion(TaskVersionInfo):
    """One recorded version of task.json."""

    document: dict[str, Any]


class ProcessingRun(BaseModel):
    """One run of a processing module on a task."""

    event_id: str
    module: str
    started_at: datetime | None = None
    ended_at: datetime
    exit_code: int | None = None
    success: bool
    log: str
    result: dict[str, Any] | list[Any] | None = None


class TaskDetail(BaseModel):
    """A task with its version list and processing runs."""

    task: TaskRecord
    versions: list[TaskVersionInfo]
    processing: list[ProcessingRun]


class EventRecord(BaseModel):
    """A stored event."""

    id: str
    time: datetime
    received_at: datetime
    service: str
    instance: str
    kind: str
    severity: str
    task_id: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    message: str
    data: dict[str, Any]


class EventPage(BaseModel):
    """A page of events, newest first."""

    items: list[EventRecord]
    next_offset: int | None


class SeriesRecord(BaseModel):
    """A received series."""

    series_uid: str
    study_uid: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    accession: str | None = None
    study_date: str | None = None
    modality: str | None = None
    series_description: str | None = None
    study_description: str | None = None
    sender_aet: str | None = None
    receiver_aet: str | None = None
    sender_address: str | None = None
    instance_count: int
    first_received: datetime
    last_received: datetime
    tags: dict[str, Any]
    task_states: list[str] = Field(
        default_factory=list, description="States of its tasks and its study's (searches only)."
    )


class SeriesPage(BaseModel):
    """A page of series, most recently received first."""

    items: list[SeriesRecord]
    next_offset: int | None


class StudyRecord(BaseModel):
    """A study: the series received of it, grouped by StudyInstanceUID."""

    study_uid: str
    patient_name: str | None = None
    patient_id: str | None = None
    accession: str | None = None
    study_date: str | None = None
    study_description: str | None = None
    modalities: list[str]
    series_count: int
    instance_count: int
    first_received: datetime
    last_received: datetime


class StudyPage(BaseModel):
    """A page of studies, most recently received first."""

    items: list[StudyRecord]
    next_offset: int | None


class SeriesHistory(BaseModel):
    """A series, the tasks made of it (its own and its study's), and their events."""

    series: SeriesRecord
    tasks: list[TaskRecord]
    events: list[EventRecord] = Field(description="Oldest first, at most 2000.")
    events_truncated: bool = Field(description="True when older events were left out.")


class AuditRecord(BaseModel):
    """One action in the web interface."""

    event_id: str
    time: datetime
    user: str
    action: str
    object: str | None = None
    remote_address: str | None = None
    message: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    """A page of audit entries, newest first."""

    items: list[AuditRecord]
    next_offset: int | None


class StatisticsBucket(BaseModel):
    """Counts of one hour or day (UTC)."""

    start: datetime
    series_received: int
    instances_received: int
    instances_dispatched: int = Field(
        description="Instances delivered to targets (one sent to two targets counts twice)."
    )
    tasks_created: int
    processed: int
    dispatched: int
    dispatch_failures: int
    tasks_completed: int
    tasks_failed: int
    tasks_discarded: int
    tasks_cleaned: int
    errors: int = Field(description="Events of severity error or critical.")


class Statistics(BaseModel):
    """Throughput per hour or day."""

    bucket: str
    since: datetime
    until: datetime
    buckets: list[StatisticsBucket]


class TargetStatistics(BaseModel):
    """Delivery to one target over a period (from the dispatcher's events)."""

    target: str
    delivered: int = Field(description="Attempts that delivered a task (dispatch.complete).")
    retried: int = Field(description="Attempts that failed and were to be retried.")
    failed: int = Field(description="Final failures: the task went to error/.")
    instances: int = Field(description="Instances delivered.")
    bytes: int = Field(description="Bytes delivered.")
    mean_seconds: float | None = Field(description="Mean time of a delivering attempt.")
    max_seconds: float | None = Field(description="Longest delivering attempt.")
    last_delivered: datetime | None
    last_error: str | None = Field(description="Reason of the newest failed attempt.")
    last_error_time: datetime | None


class TargetStatisticsPage(BaseModel):
    """Delivery per target over [since, until)."""

    since: datetime
    until: datetime
    truncated: bool = Field(
        description="More dispatch events than one answer reads: the oldest were left out."
    )
    targets: list[TargetStatistics]


class RuleHit(BaseModel):
    """How often one rule fired in a period."""

    rule: str
    tasks: int = Field(description="Tasks created in the period for which the rule fired.")
    series: int = Field(description="Distinct series among those tasks.")


class RuleHits(BaseModel):
    """Per rule, the tasks it fired for in ``[since, until)``; rules without any are absent."""

    since: datetime
    until: datetime
    rules: list[RuleHit]


class RetrieveJobRecord(BaseModel):
    """A retrieve job as its latest ``retrieve.job`` event tells it (no patient data)."""

    job: str
    time: datetime = Field(description="When the job last reported.")
    source: str | None = None
    state: str | None = Field(None, description="queued, waiting-offpeak, running, paused ...")
    studies_total: int | None = None
    studies_done: int | None = None
    studies_failed: int | None = None
    studies_remaining: int | None = None
    instances: int | None = None
    rate: float | None = Field(None, description="Instances per second over the last minute.")
    offpeak: bool | None = None
    reason: str | None = None


class RetrieveJobs(BaseModel):
    """Retrieve jobs not finished or finished lately, newest report first."""

    items: list[RetrieveJobRecord]


class Queues(BaseModel):
    """Queue depths: tasks by state in the database, entries by stage in the data folder."""

    tasks_by_state: dict[str, int]
    data_folder: dict[str, int]


class Health(BaseModel):
    """Whether the bookkeeper and its database work."""

    status: str
    database: str
    schema_revision: str | None
