"""What the router makes of a complete series: tasks, stages, task.json, events."""

from __future__ import annotations

import os
from collections.abc import Callable

from router_harness import Harness, dicom_names, sop_files

from mercure.core.datafolder import Stage

ROUTE_CT = """
rules:
  ct: {rule: "tags.Modality == 'CT'", targets: [pacs, archive]}
  everything: {rule: "True", targets: [archive]}
"""


def test_series_is_routed_after_its_quiet_time(make_router: Callable[..., Harness]) -> None:
    """Nothing happens before series_complete_trigger; then one task with every instance."""
    h = make_router(ROUTE_CT)
    series = h.send(h.series(5, modality="CT"))
    h.advance(59)
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(2)
    path, task = h.only_task(Stage.OUTGOING)
    assert dicom_names(path) == sop_files(series)
    assert task.info.uid == series.series_uid and task.info.uid_type == "series"
    assert h.incoming_left() == []


def test_same_target_through_two_rules_receives_the_series_once(
    make_router: Callable[..., Harness],
) -> None:
    """Route rules merge: one task, each target once, all fired rules recorded."""
    h = make_router(ROUTE_CT)
    h.send(h.series(modality="CT"))
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.dispatch is not None
    assert task.dispatch.target_name == ["pacs", "archive"]
    assert task.info.triggered_rules == {"ct": True, "everything": True}
    assert task.info.applied_rule == "ct"


def test_task_json_carries_identifiers_from_tags_and_journal(
    make_router: Callable[..., Harness],
) -> None:
    """info holds patient, accession, sender AE/address and the appliance name."""
    h = make_router(ROUTE_CT)
    series = h.series(modality="CT", patient_name="Doe^Jane")
    h.send(series, calling_aet="SCANNER7", address="10.1.2.3")
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.patient_name == "Doe^Jane"
    assert task.info.mrn == series.patient_id
    assert task.info.acc == series.accession_number
    assert task.info.sender_aet == "SCANNER7"
    assert task.info.sender_address == "10.1.2.3"
    assert task.info.receiver_aet == "MERCURE"
    assert task.info.mercure_appliance == "mercure"


def test_fan_out_uses_hard_links_not_copies(make_router: Callable[..., Harness]) -> None:
    """A series for two tasks is stored once: both tasks link the same inodes."""
    h = make_router(
        """
rules:
  ct: {rule: "tags.Modality == 'CT'", targets: [pacs]}
  seg: {rule: "tags.Modality == 'CT'", action: process, processing_module: seg}
"""
    )
    series = h.send(h.series(4, modality="CT"))
    h.advance(61)
    outgoing, _ = h.only_task(Stage.OUTGOING)
    processing, _ = h.only_task(Stage.PROCESSING)
    assert dicom_names(outgoing) == dicom_names(processing) == sop_files(series)
    for name in dicom_names(outgoing):
        first, second = os.stat(outgoing / name), os.stat(processing / name)
        assert first.st_ino == second.st_ino
        assert first.st_nlink == 2


def test_process_rule_merges_module_defaults_with_rule_settings(
    make_router: Callable[..., Harness],
) -> None:
    """The rule's settings win; nested settings merge key by key; targets follow processing."""
    h = make_router(
        """
rules:
  anonymise:
    rule: "True"
    action: both
    processing_module: [anon, seg]
    processing_settings: {keep: {dates: true}, level: 3}
    processing_retain_images: true
    targets: research
    priority: urgent
"""
    )
    h.send(h.series())
    h.advance(61)
    _path, task = h.only_task(Stage.PROCESSING)
    assert task.info.action == "both" and task.info.priority == "urgent"
    assert [step.module_name for step in task.process] == ["anon", "seg"]
    assert task.process[0].settings == {"mode": "strict", "keep": {"dates": True}, "level": 3}
    assert task.process[1].settings == {"keep": {"dates": True}, "level": 3}
    assert task.process[0].retain_input_images
    assert task.dispatch is not None and task.dispatch.target_name == ["research"]


def test_list_form_settings_give_each_module_its_own(
    make_router: Callable[..., Harness],
) -> None:
    """mercure's list form: the n-th settings object is the n-th module's, over its defaults."""
    h = make_router(
        """
rules:
  chain:
    rule: "True"
    action: process
    processing_module: [anon, seg]
    processing_settings: [{level: 1}, {level: 2, keep: {dates: true}}]
"""
    )
    h.send(h.series())
    h.advance(61)
    _path, task = h.only_task(Stage.PROCESSING)
    assert task.process[0].settings == {"mode": "strict", "keep": {"dates": False}, "level": 1}
    assert task.process[1].settings == {"level": 2, "keep": {"dates": True}}


def test_discard_rule_wins_over_route_rules(make_router: Callable[..., Harness]) -> None:
    """A firing discard rule sends the series to discard/: no route, study or notification."""
    h = make_router(
        ROUTE_CT
        + """
  no_scouts: {rule: "'SCOUT' in tags.SeriesDescription", action: discard}
  ct_studies: {rule: "True", targets: pacs, action_trigger: study}
  watch: {rule: "True", action: notification}
"""
    )
    series = h.send(h.series(modality="CT", series_description="SCOUT 1"))
    h.advance(61)
    path, task = h.only_task(Stage.DISCARD)
    assert h.tasks(Stage.OUTGOING) == h.tasks(Stage.STUDIES) == []
    assert h.events("rule.notification") == []
    assert dicom_names(path) == sop_files(series)
    assert task.info.action == "discard"
    assert task.info.reason == "discarded by rule 'no_scouts'"
    [event] = h.events("series.discarded")
    assert event.task_id == task.id and event.data["rule"] == "no_scouts"


def test_series_no_rule_wants_goes_to_discard_with_the_reason(
    make_router: Callable[..., Harness],
) -> None:
    """An unmatched series is kept in discard/, marked nomatch."""
    h = make_router(ROUTE_CT.replace('"True"', "\"tags.Modality == 'US'\""))
    h.send(h.series(modality="MR"))
    h.advance(61)
    _path, task = h.only_task(Stage.DISCARD)
    assert task.nomatch
    assert task.info.reason == "no rule selected the series"
    assert task.info.triggered_rules == {}


def test_fallback_fires_only_when_no_other_rule_fired(make_router: Callable[..., Harness]) -> None:
    """The fallback route is taken by the MR series, not by the CT one."""
    h = make_router(
        """
rules:
  ct: {rule: "tags.Modality == 'CT'", targets: pacs}
  rest: {rule: "True", targets: archive, fallback: true}
"""
    )
    ct = h.send(h.series(modality="CT"))
    mr = h.send(h.series(modality="MR"))
    h.advance(61)
    targets = {}
    for path in h.tasks(Stage.OUTGOING):
        task = h.task(path)
        assert task.dispatch is not None
        targets[task.info.uid] = (task.dispatch.target_name, task.info.applied_rule)
    assert targets == {ct.series_uid: (["pacs"], "ct"), mr.series_uid: (["archive"], "rest")}


def test_disabled_rule_is_not_evaluated(make_router: Callable[..., Harness]) -> None:
    """A disabled rule neither fires nor fails."""
    h = make_router(
        """
rules:
  disabled_one: {rule: "float(tags.Modality) > 1", targets: pacs, disabled: true}
  enabled_one: {rule: "True", targets: archive}
"""
    )
    h.send(h.series())
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.triggered_rules == {"enabled_one": True}
    assert h.events("rule.error") == []


def test_rule_failing_at_run_time_is_false_and_reported(
    make_router: Callable[..., Harness],
) -> None:
    """float('CT') fails: the rule is false, the series goes on, an event says why."""
    h = make_router(
        """
rules:
  broken: {rule: "float(tags.Modality) > 1", targets: pacs}
  rest: {rule: "True", targets: archive, fallback: true}
"""
    )
    series = h.send(h.series(modality="CT"))
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.applied_rule == "rest"
    [event] = h.events("rule.error")
    assert event.series_uid == series.series_uid
    assert event.data["rule"] == "broken" and event.data["reason"]


def test_rule_over_its_work_budget_is_false_and_reported_like_any_failure(
    make_router: Callable[..., Harness],
) -> None:
    """A rule that would compare 100 GB is stopped: false, a rule.error naming the budget."""
    h = make_router(
        """
rules:
  hostile: {rule: "[tags.Modality * 400000] * 100000 == [tags.Modality * 400000] * 100000",
            targets: pacs}
  rest: {rule: "True", targets: archive, fallback: true}
"""
    )
    series = h.send(h.series(modality="CT"))
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.applied_rule == "rest"
    [event] = h.events("rule.error")
    assert event.series_uid == series.series_uid
    assert event.data["rule"] == "hostile"
    assert event.data["reason"] == "the rule needs too much work (more than 25,000,000 units)"


def test_missing_tag_makes_a_rule_false_without_an_error(
    make_router: Callable[..., Harness],
) -> None:
    """A rule about an absent tag is simply false."""
    h = make_router(
        """
rules:
  body: {rule: "tags.BodyPartExamined == 'HEAD'", targets: pacs}
"""
    )
    h.send(h.series(tags={"BodyPartExamined": None}))
    h.advance(61)
    h.only_task(Stage.DISCARD)
    assert h.events("rule.error") == []


def test_notification_only_series_is_kept_in_success(make_router: Callable[..., Harness]) -> None:
    """A series that only notifies: event, and the series goes to success/."""
    h = make_router(
        """
rules:
  watch: {rule: "tags.Modality == 'MR'", action: notification}
"""
    )
    series = h.send(h.series(modality="MR"))
    h.advance(61)
    _path, task = h.only_task(Stage.SUCCESS)
    assert task.info.action == "notification"
    [event] = h.events("rule.notification")
    assert event.data["rule"] == "watch" and event.series_uid == series.series_uid


def test_route_task_takes_the_most_urgent_priority(make_router: Callable[..., Harness]) -> None:
    """Two route rules, normal and urgent: the merged task is urgent."""
    h = make_router(
        """
rules:
  a: {rule: "True", targets: pacs}
  b: {rule: "True", targets: archive, priority: urgent}
"""
    )
    h.send(h.series())
    h.advance(61)
    assert h.only_task(Stage.OUTGOING)[1].info.priority == "urgent"


def test_events_tell_the_bookkeeper_about_series_and_tasks(
    make_router: Callable[..., Harness],
) -> None:
    """series.received, series.complete, then task.created with the task.json and stage."""
    h = make_router(ROUTE_CT)
    series = h.send(h.series(4, modality="CT"))
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    [received] = h.events("series.received")
    assert received.series_uid == series.series_uid
    assert received.data["instances"] == 4
    assert received.data["tags"]["Modality"] == "CT"
    assert received.data["first_received"] <= received.data["last_received"]
    [complete] = h.events("series.complete")
    assert complete.series_uid == series.series_uid
    assert complete.study_uid == series.study_uid
    assert complete.data["instances"] == 4
    assert complete.data["completed_by"] == "router.series_complete_trigger"
    [created] = h.events("task.created")
    assert created.task_id == task.id and created.series_uid == series.series_uid
    assert created.data["stage"] == "outgoing"
    assert created.data["task"]["info"]["uid"] == series.series_uid
    assert created.data["task"]["dispatch"]["target_name"] == ["pacs", "archive"]


def test_missing_tags_file_is_rebuilt_from_the_instances(
    make_router: Callable[..., Harness],
) -> None:
    """Without tags.json the rules still see the tags of the first instance."""
    h = make_router(ROUTE_CT)
    series = h.series(modality="CT")
    h.writer.send(series)
    (h.data.stage(Stage.INCOMING) / series.series_uid / "tags.json").unlink()
    h.router.on_series_created(series.series_uid)
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.applied_rule == "ct"
    assert task.info.sender_aet == "MODALITY"


def test_folder_without_instances_is_removed(make_router: Callable[..., Harness]) -> None:
    """A series folder holding no .dcm (a sender that gave up) does not stay forever."""
    h = make_router(ROUTE_CT)
    folder = h.data.stage(Stage.INCOMING) / "1.2.3.4"
    folder.mkdir()
    (folder / "journal.jsonl").write_text("")
    h.router.on_series_created("1.2.3.4")
    h.advance(61)
    assert h.incoming_left() == []
    assert [e.series_uid for e in h.events("series.empty")] == ["1.2.3.4"]
