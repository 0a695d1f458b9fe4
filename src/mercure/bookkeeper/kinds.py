"""The event kinds the bookkeeper understands: the contract with every service.

Any event is stored. A few kinds, and a few keys of ``data``, also update the projections
(series, tasks, targets, processing, audit); ``docs/bookkeeper.md`` lists them with their data.
Two rules hold for every event that carries a ``task_id``:

- ``data["task"]`` (the whole ``task.json``) records a new version of the task;
- ``data["stage"]`` says which stage folder the task is in after the event (its state).
"""

from __future__ import annotations

from typing import Final

SERIES_RECEIVED: Final = "series.received"
TASK_CREATED: Final = "task.created"
TASK_UPDATE: Final = "task.update"
TASK_COMPLETED: Final = "task.completed"
TASK_FAILED: Final = "task.failed"
TASK_DISCARDED: Final = "task.discarded"
TASK_REQUEUED: Final = "task.requeued"
TASK_CLEANED: Final = "task.cleaned"
TASK_DELETED: Final = "task.deleted"
TASK_RESENT: Final = "task.resent"
PROCESS_BEGIN: Final = "process.begin"
PROCESS_END: Final = "process.end"
DISPATCH_BEGIN: Final = "dispatch.begin"
DISPATCH_COMPLETE: Final = "dispatch.complete"
DISPATCH_FAILED: Final = "dispatch.failed"
OUTBOX_DROPPED: Final = "outbox.dropped"
INSTANCE_REJECTED: Final = "instance.rejected"
AUDIT_PREFIX: Final = "audit."
NOTIFICATION_QUEUED: Final = "notification.queued"
NOTIFICATION_ATTEMPT: Final = "notification.attempt"
NOTIFICATION_SENT: Final = "notification.sent"
NOTIFICATION_FAILED: Final = "notification.failed"
NOTIFICATION_KINDS: Final = (
    NOTIFICATION_QUEUED,
    NOTIFICATION_ATTEMPT,
    NOTIFICATION_SENT,
    NOTIFICATION_FAILED,
)
"""A task's notifications: queued by the service that saw the moment, then the notifier's
attempts and outcome (data: notification_id, channel, trigger, rule, attempts, reason, answer).
Stored in the task's timeline; they change no projection."""

# The processor's names for the same facts (it reports per module run): accepted as aliases.
PROCESSOR_BEGIN: Final = "task.process.begin"
PROCESSOR_LOG: Final = "task.process.log"
PROCESSOR_ERROR: Final = "task.process.error"

PROCESSING_RUN_KINDS: Final = frozenset({PROCESS_END, PROCESSOR_LOG})
"""Kinds that record one run of a module (data: module, exit_code, log, result)."""
FAILURE_KINDS: Final = frozenset({TASK_FAILED, PROCESSOR_ERROR, INSTANCE_REJECTED})
"""Kinds that say a task failed (data: fail_stage, reason; or the message)."""
FAIL_STAGE_BY_KIND: Final = {INSTANCE_REJECTED: "receive"}
"""The failed stage a kind implies when its event carries no ``data["fail_stage"]``."""

CLEANED: Final = "cleaned"
DELETED: Final = "deleted"
UNKNOWN: Final = "unknown"
ACTIVE_STATES: Final = ("incoming", "studies", "processing", "outgoing")
FINISHED_STATES: Final = ("success", "discard", "error", CLEANED, DELETED)
"""A task in one of these states is done; retention may prune it."""

STAGE_BY_KIND: Final = {
    PROCESS_BEGIN: "processing",
    PROCESSOR_BEGIN: "processing",
    PROCESSOR_ERROR: "error",
    INSTANCE_REJECTED: "error",
    DISPATCH_BEGIN: "outgoing",
    TASK_COMPLETED: "success",
    TASK_FAILED: "error",
    TASK_DISCARDED: "discard",
    TASK_CLEANED: CLEANED,
    TASK_DELETED: DELETED,
}
"""The state a kind implies when its event carries no ``data["stage"]``."""

STAGE_BY_ACTION: Final = {
    "route": "outgoing",
    "process": "processing",
    "both": "processing",
    "discard": "discard",
    "notification": "success",
}
"""Where a new task starts, by action, for a ``task.created`` without ``data["stage"]``."""

TARGET_STATE_BY_KIND: Final = {
    DISPATCH_BEGIN: "sending",
    DISPATCH_COMPLETE: "complete",
    DISPATCH_FAILED: "error",
}
RETRYING: Final = "retrying"

KNOWN_KINDS: Final = (
    "service.boot",
    "service.stop",
    "service.crash",
    "service.exited",
    "config.reloaded",
    OUTBOX_DROPPED,
    "outbox.rejected",
    "association.closed",
    "association.rejected",
    INSTANCE_REJECTED,
    SERIES_RECEIVED,
    "series.error",
    TASK_CREATED,
    TASK_UPDATE,
    "rule.error",
    PROCESS_BEGIN,
    PROCESS_END,
    PROCESSOR_BEGIN,
    PROCESSOR_LOG,
    "task.process.result",
    "task.process.complete",
    PROCESSOR_ERROR,
    DISPATCH_BEGIN,
    DISPATCH_COMPLETE,
    DISPATCH_FAILED,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_DISCARDED,
    TASK_REQUEUED,
    TASK_CLEANED,
    TASK_DELETED,
    TASK_RESENT,
    "cleaner.disk_pressure",
    *NOTIFICATION_KINDS,
)
"""Kinds named in the contract; metrics count others under ``kind="other"``."""

STATISTICS: Final = {
    "series_received": SERIES_RECEIVED,
    "tasks_created": TASK_CREATED,
    "processed": PROCESS_END,
    "dispatched": DISPATCH_COMPLETE,
    "dispatch_failures": DISPATCH_FAILED,
    "tasks_completed": TASK_COMPLETED,
    "tasks_failed": TASK_FAILED,
    "tasks_discarded": TASK_DISCARDED,
    "tasks_cleaned": TASK_CLEANED,
}
"""Throughput counters of the statistics API: name -> the kind counted."""

INSTANCE_COUNTING_KINDS: Final = frozenset({SERIES_RECEIVED, DISPATCH_COMPLETE})
"""Kinds whose ``data["instances"]`` the hourly counts add up: instances received, and
instances delivered (per target, so one instance sent to two targets counts twice)."""

SEVERITIES: Final = ("debug", "info", "warning", "error", "critical")

RETRIEVE_JOB: Final = "retrieve.job"
"""A retrieve job's progress (docs/retrieve.md), emitted when it is created, starts, pauses,
resumes, finishes a study and ends. ``data``: ``job``, ``source``, ``state`` (one of
:data:`RETRIEVE_JOB_STATES`), ``studies_total``, ``studies_done``, ``studies_failed``,
``studies_remaining``, ``instances`` (retrieved so far), ``rate`` (instances per second over
the last minute, or null), ``offpeak`` (bool), ``reason`` (why it failed or waits, or null)."""
RETRIEVE_STUDY: Final = "retrieve.study"
"""One study of a retrieve job done or failed. ``data``: ``job``, ``source``, ``state``
("done" | "failed" | "retrying"), ``expected`` and ``retrieved`` instance counts, ``attempt``,
``reason`` (or null); the study's UID is the event's own ``study_uid`` (null for an accession
the source did not find). No patient data: the accession number stays in the job folder."""
RETRIEVE_JOB_STATES: Final = (
    "queued",
    "waiting-offpeak",
    "running",
    "paused",
    "done",
    "failed",
    "cancelled",
)
