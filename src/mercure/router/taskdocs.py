"""The ``task.json`` documents the router writes, in mercure's field names.

Every task of a series carries the same ``info`` identifiers (series UID, patient, accession,
sender) and all rules that fired (``triggered_rules``); ``applied_rule`` names the rule the task
is for. Module settings are the module's defaults with the rule's settings merged over them
(the rule wins; nested mappings are merged key by key).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from mercure import __version__
from mercure.core.config import MercureConfig, Rule
from mercure.core.config.modulecheck import merge_settings, rule_settings
from mercure.core.datafolder import Stage
from mercure.core.rules.decision import Decision, route_priority
from mercure.core.task import (
    Task,
    TaskDispatch,
    TaskInfo,
    TaskProcessing,
    TaskStudy,
    new_task_id,
)


@dataclass(frozen=True)
class SeriesFacts:
    """What the router knows about a complete series besides its files."""

    series_uid: str
    tags: Mapping[str, str]
    sender_aet: str | None = None
    receiver_aet: str | None = None
    sender_address: str | None = None

    @property
    def study_uid(self) -> str | None:
        """The series' StudyInstanceUID, if its tags have one."""
        return self.tags.get("StudyInstanceUID") or None

    @property
    def description(self) -> str:
        """The SeriesDescription ('' if none): what a study's required series are matched to."""
        return self.tags.get("SeriesDescription", "")


@dataclass(frozen=True)
class PlannedTask:
    """A task to create: its document and the stage folder it goes to."""

    task: Task
    stage: Stage


def _info(
    config: MercureConfig,
    facts: SeriesFacts,
    decision: Decision,
    *,
    action: str,
    applied_rule: str | None,
    priority: str,
    uid: str | None = None,
    uid_type: str = "series",
    reason: str | None = None,
) -> TaskInfo:
    tags = facts.tags
    return TaskInfo(
        action=action,
        uid=uid or facts.series_uid,
        uid_type=uid_type,
        triggered_rules={name: True for name in decision.fired},
        applied_rule=applied_rule,
        priority=priority,
        patient_name=tags.get("PatientName"),
        mrn=tags.get("PatientID"),
        acc=tags.get("AccessionNumber"),
        sender_address=tags.get("SenderAddress") or facts.sender_address,
        sender_aet=tags.get("SenderAET") or facts.sender_aet,
        receiver_aet=tags.get("ReceiverAET") or facts.receiver_aet,
        mercure_version=__version__,
        mercure_appliance=config.appliance_name,
        mercure_server=socket.gethostname(),
        device_serial_number=tags.get("DeviceSerialNumber"),
        reason=reason,
    )


def _processing(config: MercureConfig, rule: Rule) -> list[TaskProcessing]:
    steps = []
    for index, module_name in enumerate(rule.processing_module):
        module = config.modules.get(module_name)
        defaults = module.settings if module is not None else {}
        steps.append(
            TaskProcessing(
                module_name=module_name,
                settings=merge_settings(defaults, rule_settings(rule.processing_settings, index)),
                retain_input_images=rule.processing_retain_images,
            )
        )
    return steps


def _rule_task(
    config: MercureConfig,
    facts: SeriesFacts,
    decision: Decision,
    name: str,
    *,
    uid: str | None = None,
    uid_type: str = "series",
) -> Task:
    """The task of one rule (processing, notification, or any study-level rule)."""
    rule = config.rules[name]
    info = _info(
        config,
        facts,
        decision,
        action=rule.action,
        applied_rule=name,
        priority=rule.priority,
        uid=uid,
        uid_type=uid_type,
    )
    return Task(
        id=new_task_id(),
        info=info,
        dispatch=TaskDispatch(target_name=list(rule.targets)) if rule.targets else None,
        process=_processing(config, rule) if rule.action in ("process", "both") else [],
    )


def series_tasks(
    config: MercureConfig, facts: SeriesFacts, decision: Decision
) -> list[PlannedTask]:
    """The series-level tasks of a decision (study collection is planned separately)."""
    if decision.discarded:
        info = _info(
            config,
            facts,
            decision,
            action="discard",
            applied_rule=decision.discard_rule,
            priority="normal",
            reason=decision.reason,
        )
        task = Task(id=new_task_id(), info=info, nomatch=not decision.fired)
        return [PlannedTask(task, Stage.DISCARD)]
    planned: list[PlannedTask] = []
    if decision.route_rules:
        info = _info(
            config,
            facts,
            decision,
            action="route",
            applied_rule=decision.route_rules[0],
            priority=route_priority(config.rules, decision.route_rules),
        )
        dispatch = TaskDispatch(target_name=list(decision.route_targets))
        planned.append(
            PlannedTask(Task(id=new_task_id(), info=info, dispatch=dispatch), Stage.OUTGOING)
        )
    for name in decision.processing_rules:
        planned.append(PlannedTask(_rule_task(config, facts, decision, name), Stage.PROCESSING))
    acts = decision.route_rules or decision.processing_rules or decision.study_rules
    if decision.notification_rules and not acts:
        # Nothing else happens to the series: keep it in success/ as the record of what came.
        name = decision.notification_rules[0]
        planned.append(PlannedTask(_rule_task(config, facts, decision, name), Stage.SUCCESS))
    return planned


def study_task(
    config: MercureConfig,
    facts: SeriesFacts,
    decision: Decision,
    name: str,
    now: datetime,
) -> Task:
    """The task of a study collected for rule ``name``, holding this series as its first."""
    rule = config.rules[name]
    study_uid = facts.study_uid or ""
    task = _rule_task(config, facts, decision, name, uid=study_uid, uid_type="study")
    task.study = TaskStudy(
        study_uid=study_uid,
        complete_trigger=rule.study_trigger_condition,
        complete_required_series=rule.study_trigger_series,
        creation_time=now,
        last_receive_time=now,
        received_series=[facts.description],
        received_series_uid=[facts.series_uid],
        complete_force=False,
        complete_force_action=rule.study_force_action,
    )
    return task


def study_folder_name(study_uid: str, rule: str) -> str:
    """The folder of a study collected for a rule: ``<StudyInstanceUID>#<rule>``."""
    return f"{study_uid}#{rule}"
