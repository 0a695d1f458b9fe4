"""Which rules of a task notify which channels, and queueing their notifications.

mercure's options, same meaning: a task's rules are its ``applied_rule``, or else every rule in
``triggered_rules``; each notifies its ``notification_channels`` on reception when
``notification_trigger_reception``, on completion when ``notification_trigger_completion`` (or,
with ``notification_trigger_completion_on_request``, when a module's ``result.json`` requests
it), and on error when ``notification_trigger_error``. A trigger listed in
``notification_urgent_only`` notifies for urgent tasks only.

The services call :func:`notify_task` *before* they move the task on (as they report its
events), so a crash in between repeats the notification rather than losing it. Nothing is read
or written for a task whose rules have no channels: without notifications it costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder
from mercure.core.dicomtags import TAGS_FILE, read_tags_file, tags_from_dicom
from mercure.core.notifications.queue import Notification, Trigger, enqueue, new_notification_id

if TYPE_CHECKING:
    from mercure.core.config.models import MercureConfig, Rule
    from mercure.core.events import EventClient
    from mercure.core.task import Task

log = logging.getLogger(__name__)

NOTIFICATION_KEY = "__mercure_notification"
"""The key of a module's result.json that requests a notification (mercure's)."""

TEXTS = {
    "reception": "Rule {rule} selected a series; task {task_id} was created.",
    "completion": "Task {task_id} of rule {rule} is complete.",
    "error": "Task {task_id} of rule {rule} failed{stage}.",
    "test": "Test notification from mercure ({appliance}).",
}
"""The ``text`` field of each trigger: says what happened, never who it happened to."""


def task_rules(task: Task, config: MercureConfig | None = None) -> list[str]:
    """The rules a task belongs to: its applied rule, or else the rules that triggered it.

    A series' route task carries every series-level route rule that fired for it (their
    targets merged into one task, the first rule named as applied): with ``config``, all of
    those rules. Any other task (a study's, a processing task) is its applied rule's alone.
    """
    fired = [name for name, on in task.info.triggered_rules.items() if on]
    if task.info.action == "route" and task.info.uid_type == "series" and config is not None:
        routes = [
            name
            for name in fired
            if (rule := config.rules.get(name)) is not None
            and rule.action == "route"
            and rule.action_trigger == "series"
        ]
        applied = [task.info.applied_rule] if task.info.applied_rule else []
        return applied + [name for name in routes if name not in applied]
    if task.info.applied_rule:
        return [task.info.applied_rule]
    return fired


def requested(task: Task) -> bool:
    """Whether a module's result asks for a notification (``requested: true``)."""
    return any(_request(process.output).get("requested") is True for process in task.process)


def details(task: Task) -> str:
    """The texts the task's modules asked to send, one per line."""
    texts = [_request(process.output).get("text") for process in task.process]
    return "\n".join(text for text in texts if isinstance(text, str) and text)


def _request(output: Mapping[str, Any] | None) -> Mapping[str, Any]:
    value = (output or {}).get(NOTIFICATION_KEY)
    return value if isinstance(value, Mapping) else {}


def rule_notifies(rule: Rule, trigger: Trigger, task: Task) -> bool:
    """Whether ``rule`` notifies its channels on ``trigger`` for ``task``."""
    if trigger == "reception":
        on = rule.notification_trigger_reception
    elif trigger == "completion":
        on = rule.notification_trigger_completion or (
            rule.notification_trigger_completion_on_request and requested(task)
        )
    elif trigger == "error":
        on = rule.notification_trigger_error
    else:
        return False
    if on and trigger in rule.notification_urgent_only:
        return task.info.priority == "urgent"
    return on


def due_channels(config: MercureConfig, task: Task, trigger: Trigger) -> list[tuple[str, str]]:
    """``(rule, channel)`` pairs to notify for ``trigger``; channels that no longer exist are
    logged and skipped (check-config refuses them, so only a stale task can name one)."""
    pairs = []
    for name in task_rules(task, config):
        rule = config.rules.get(name)
        if rule is None or not rule.notification_channels:
            continue
        if not rule_notifies(rule, trigger, task):
            continue
        for channel in rule.notification_channels:
            if channel in config.notifications:
                pairs.append((name, channel))
            else:
                log.warning("rule %s names notification channel %r, which is gone", name, channel)
    return pairs


def task_facts(
    config: MercureConfig,
    task: Task,
    trigger: Trigger,
    rule: str,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """The template fields of a task (templates.FIELDS), PHI included."""
    results: dict[str, Any] = {}
    for process in task.process:
        results.update(process.output or {})
    stage = f" in {task.info.fail_stage}" if task.info.fail_stage else ""
    text = TEXTS[trigger].format(
        rule=rule, task_id=task.id, stage=stage, appliance=config.appliance_name
    )
    return {
        "event": trigger,
        "text": text,
        "rule": rule,
        "task_id": task.id,
        "action": task.info.action,
        "priority": task.info.priority,
        "appliance": config.appliance_name,
        "time": utcnow().isoformat(),
        "modality": tags.get("Modality", ""),
        "study_description": tags.get("StudyDescription", ""),
        "series_description": tags.get("SeriesDescription", ""),
        "sender_aet": task.info.sender_aet or tags.get("SenderAET", ""),
        "targets": list(task.dispatch.target_name) if task.dispatch else [],
        "modules": [process.module_name for process in task.process],
        "result": results,
        "details": details(task),
        "requested": requested(task),
        "reason": task.info.reason or "" if trigger == "error" else "",
        "fail_stage": task.info.fail_stage or "" if trigger == "error" else "",
        "patient_name": task.info.patient_name or tags.get("PatientName", ""),
        "patient_id": task.info.mrn or tags.get("PatientID", ""),
        "patient_birth_date": tags.get("PatientBirthDate", ""),
        "accession": task.info.acc or tags.get("AccessionNumber", ""),
        "study_uid": tags.get("StudyInstanceUID", "")
        or (task.info.uid if task.info.uid_type == "study" else ""),
        "series_uid": task.info.uid if task.info.uid_type == "series" else "",
    }


def folder_tags(task_dir: Path | None) -> dict[str, str]:
    """The tags of a task folder: its ``tags.json`` if it has one, else the header of its first
    DICOM file (searched in the folder and its ``in/`` and ``out/``); empty if neither."""
    if task_dir is None:
        return {}
    for folder in (task_dir, task_dir / "in", task_dir / "out"):
        if (folder / TAGS_FILE).is_file():
            found = read_tags_file(folder / TAGS_FILE)
            if found is not None:
                return found
    for folder in (task_dir, task_dir / "in", task_dir / "out"):
        try:
            first = min((p for p in folder.iterdir() if p.suffix == ".dcm"), default=None)
        except OSError:
            continue
        if first is not None:
            try:
                return tags_from_dicom(first)
            except Exception:  # a notification must not fail on a bad header
                log.debug("no tags for a notification from %s", first, exc_info=True)
                return {}
    return {}


def notify_task(
    data: DataFolder,
    config: MercureConfig,
    task: Task,
    trigger: Trigger,
    *,
    task_dir: Path | None = None,
    tags: Mapping[str, str] | None = None,
    events: EventClient | None = None,
) -> list[Notification]:
    """Queue the notifications ``trigger`` causes for ``task``; returns them (often none).

    ``tags`` are the series' tags when the caller has them; otherwise they are read from
    ``task_dir`` only if some channel is due.
    """
    pairs = due_channels(config, task, trigger)
    if not pairs:
        return []
    if tags is None:
        tags = folder_tags(task_dir)
    queued = []
    for rule, channel in pairs:
        notification = Notification(
            id=new_notification_id(),
            channel=channel,
            trigger=trigger,
            rule=rule,
            task_id=task.id,
            facts=task_facts(config, task, trigger, rule, tags),
        )
        enqueue(data, notification)
        queued.append(notification)
        if events is not None:
            events.emit(
                "notification.queued",
                task_id=task.id,
                message=f"{trigger} notification queued for channel {channel} (rule {rule})",
                notification_id=notification.id,
                channel=channel,
                trigger=trigger,
                rule=rule,
            )
    return queued


def notify_safely(
    data: DataFolder,
    config: MercureConfig,
    task: Task,
    trigger: Trigger,
    *,
    task_dir: Path | None = None,
    tags: Mapping[str, str] | None = None,
    events: EventClient | None = None,
) -> list[Notification]:
    """:func:`notify_task` for the services: a notification that cannot be queued (disk full,
    unreadable header) is logged and dropped, never raised.

    The task matters more than its notification: the caller moves the task on whatever happens
    here, so that a full disk costs a message and not the task.
    """
    try:
        return notify_task(data, config, task, trigger, task_dir=task_dir, tags=tags, events=events)
    except Exception as exc:  # the task must move on; see the docstring
        # An OSError names a path of the queue; anything else might quote the facts (PHI).
        shown = exc if isinstance(exc, OSError) else type(exc).__name__
        log.error("task %s: cannot queue its %s notification: %s", task.id, trigger, shown)
        log.debug("queueing the notification of task %s failed", task.id, exc_info=True)
        return []
