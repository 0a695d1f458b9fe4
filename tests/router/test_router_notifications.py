"""The router queues the reception notifications of the tasks it creates."""

from __future__ import annotations

from collections.abc import Callable

from router_harness import Harness

from mercure.core.datafolder import Stage
from mercure.core.notifications.queue import Notification, queued, read_notification

CHANNELS = """
notifications:
  hook:
    type: webhook
    url: http://127.0.0.1:9/hook
  hook2:
    type: webhook
    url: http://127.0.0.1:9/other
"""


def notifications(h: Harness) -> list[Notification]:
    return [read_notification(path) for path in queued(h.data)]


def test_a_processing_task_notifies_reception_on_each_channel(
    make_router: Callable[..., Harness],
) -> None:
    """One notification per channel, for the task in processing/, with the series' facts."""
    h = make_router(
        CHANNELS
        + """
rules:
  ct:
    rule: "tags.Modality == 'CT'"
    action: process
    processing_module: seg
    notification_channels: [hook, hook2]
    notification_trigger_completion: false
"""
    )
    h.send(h.series(2, modality="CT"))
    h.advance(61)
    _folder, task = h.only_task(Stage.PROCESSING)
    found = notifications(h)
    assert sorted(n.channel for n in found) == ["hook", "hook2"]
    assert {(n.trigger, n.rule, n.task_id) for n in found} == {("reception", "ct", task.id)}
    assert found[0].facts["modality"] == "CT"
    assert found[0].facts["action"] == "process"
    events = h.events("notification.queued")
    assert sorted(e.data["channel"] for e in events) == ["hook", "hook2"]
    assert {(e.task_id, e.data["trigger"], e.data["rule"]) for e in events} == {
        (task.id, "reception", "ct")
    }
    assert {e.data["notification_id"] for e in events} == {n.id for n in found}


def test_rules_without_channels_or_reception_queue_nothing(
    make_router: Callable[..., Harness],
) -> None:
    h = make_router(
        CHANNELS
        + """
rules:
  ct:
    rule: "tags.Modality == 'CT'"
    targets: pacs
    notification_channels: [hook]
    notification_trigger_reception: false
  mr:
    rule: "tags.Modality == 'MR'"
    targets: pacs
"""
    )
    h.send(h.series(1, modality="CT"))
    h.send(h.series(1, modality="MR"))
    h.advance(61)
    assert len(h.tasks(Stage.OUTGOING)) == 2
    assert queued(h.data) == []
    assert h.events("notification.queued") == []


def test_a_notification_rule_notifies_reception_and_completion(
    make_router: Callable[..., Harness],
) -> None:
    """Its task goes straight to success/: it is complete as it is created."""
    h = make_router(
        CHANNELS
        + """
rules:
  tell:
    rule: "True"
    action: notification
    notification_channels: [hook]
"""
    )
    h.send(h.series(1))
    h.advance(61)
    _folder, task = h.only_task(Stage.SUCCESS)
    found = notifications(h)
    assert sorted(n.trigger for n in found) == ["completion", "reception"]
    assert {n.task_id for n in found} == {task.id}


def test_urgent_only_reception_notifies_urgent_tasks_only(
    make_router: Callable[..., Harness],
) -> None:
    h = make_router(
        CHANNELS
        + """
rules:
  normal_ct:
    rule: "tags.Modality == 'CT'"
    targets: pacs
    notification_channels: [hook]
    notification_urgent_only: [reception]
  urgent_mr:
    rule: "tags.Modality == 'MR'"
    targets: pacs
    priority: urgent
    notification_channels: [hook]
    notification_urgent_only: [reception]
"""
    )
    h.send(h.series(1, modality="CT"))
    h.send(h.series(1, modality="MR"))
    h.advance(61)
    assert [(n.rule, n.trigger) for n in notifications(h)] == [("urgent_mr", "reception")]


def test_a_study_notifies_reception_once_for_its_first_series(
    make_router: Callable[..., Harness],
) -> None:
    """Later series join the study: no further reception notification."""
    h = make_router(
        CHANNELS
        + """
router:
  series_complete_trigger: 60
  study_complete_trigger: 300
  study_forcecomplete_trigger: 3600
  rescan_interval: 100000
rules:
  whole_study:
    rule: "True"
    targets: pacs
    action_trigger: study
    notification_channels: [hook]
"""
    )
    for number, description in ((1, "T1"), (2, "T2"), (3, "FLAIR")):
        h.send(h.series(1, seed=42, series_number=number, series_description=description))
        h.advance(61)
    [folder] = h.tasks(Stage.STUDIES)
    study = h.task(folder)
    assert study.study is not None and len(study.study.received_series_uid) == 3
    [notification] = notifications(h)
    assert (notification.trigger, notification.task_id) == ("reception", study.id)
    assert len(h.events("notification.queued")) == 1


def test_a_study_of_a_notification_rule_notifies_completion_when_it_completes(
    make_router: Callable[..., Harness],
) -> None:
    h = make_router(
        CHANNELS
        + """
router:
  series_complete_trigger: 60
  study_complete_trigger: 300
  study_forcecomplete_trigger: 3600
  rescan_interval: 100000
rules:
  tell_study:
    rule: "True"
    action: notification
    action_trigger: study
    notification_channels: [hook]
"""
    )
    h.send(h.series(1, seed=42, series_number=1, series_description="T1"))
    h.advance(61)
    assert [n.trigger for n in notifications(h)] == ["reception"]
    h.advance(301)
    _folder, task = h.only_task(Stage.SUCCESS)
    assert sorted((n.trigger, n.task_id) for n in notifications(h)) == [
        ("completion", task.id),
        ("reception", task.id),
    ]


def test_every_route_rule_of_a_merged_route_task_notifies(
    make_router: Callable[..., Harness],
) -> None:
    """Two route rules share one task (targets merged): each rule's channels hear of it."""
    h = make_router(
        CHANNELS
        + """
rules:
  ct:
    rule: "tags.Modality == 'CT'"
    targets: pacs
    notification_channels: [hook]
  all:
    rule: "True"
    targets: pacs
    notification_channels: [hook2]
"""
    )
    h.send(h.series(1, modality="CT"))
    h.advance(61)
    _folder, task = h.only_task(Stage.OUTGOING)
    assert sorted((n.rule, n.channel, n.task_id) for n in notifications(h)) == [
        ("all", "hook2", task.id),
        ("ct", "hook", task.id),
    ]


def test_a_notification_rule_beside_a_routing_rule_still_notifies(
    make_router: Callable[..., Harness],
) -> None:
    """The notification rule has no task of its own then; it notifies with the route task."""
    h = make_router(
        CHANNELS
        + """
rules:
  ct:
    rule: "tags.Modality == 'CT'"
    targets: pacs
  tell:
    rule: "tags.Modality == 'CT'"
    action: notification
    notification_channels: [hook]
"""
    )
    h.send(h.series(1, modality="CT"))
    h.advance(61)
    _folder, task = h.only_task(Stage.OUTGOING)
    found = notifications(h)
    assert sorted((n.rule, n.trigger, n.task_id) for n in found) == [
        ("tell", "completion", task.id),
        ("tell", "reception", task.id),
    ]
    assert {n.facts["action"] for n in found} == {"notification"}


def test_a_series_route_rule_is_not_told_about_a_study_task(
    make_router: Callable[..., Harness],
) -> None:
    """The study's task names the series rule among its triggered rules, but only the study
    rule's channels hear of it; the series rule's channel hears of the series task."""
    h = make_router(
        CHANNELS
        + """
router:
  series_complete_trigger: 60
  study_complete_trigger: 300
  study_forcecomplete_trigger: 3600
  rescan_interval: 100000
rules:
  every_series:
    rule: "True"
    targets: pacs
    notification_channels: [hook]
  whole_study:
    rule: "True"
    targets: pacs
    action_trigger: study
    notification_channels: [hook2]
"""
    )
    h.send(h.series(1, seed=42))
    h.advance(61)
    _folder, series_task = h.only_task(Stage.OUTGOING)
    [folder] = h.tasks(Stage.STUDIES)
    study = h.task(folder)
    assert sorted((n.rule, n.channel, n.task_id) for n in notifications(h)) == [
        ("every_series", "hook", series_task.id),
        ("whole_study", "hook2", study.id),
    ]
