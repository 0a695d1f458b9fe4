"""Study collection: studies/<StudyInstanceUID>#<rule>/, its completion and forcing."""

from __future__ import annotations

import json
from collections.abc import Callable

from router_harness import Harness, dicom_names, sop_files

from mercure.core.datafolder import Stage
from mercure.testing.series import GeneratedSeries

STUDY_RULE = """
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
"""

REQUIRED_RULE = """
router:
  series_complete_trigger: 60
  study_complete_trigger: 300
  study_forcecomplete_trigger: 3600
  rescan_interval: 100000
rules:
  mr_brain:
    rule: "tags.Modality == 'MR'"
    action: process
    processing_module: seg
    action_trigger: study
    study_trigger_condition: received_series
    study_trigger_series: "'T1' and ('T2' or 'FLAIR')"
    study_force_action: {force}
"""


def study_series(h: Harness, number: int, description: str, **kwargs: object) -> GeneratedSeries:
    """Series ``number`` of the one study these tests send (seed 42)."""
    return h.series(2, seed=42, series_number=number, series_description=description, **kwargs)


def test_study_is_collected_until_its_timeout(make_router: Callable[..., Harness]) -> None:
    """Series wait in studies/ and leave together, as one study task, after the timeout."""
    h = make_router(STUDY_RULE)
    first = h.send(study_series(h, 1, "T1"))
    second = h.send(study_series(h, 2, "T2"))
    h.advance(61)
    assert h.tasks(Stage.OUTGOING) == []
    [folder] = h.tasks(Stage.STUDIES)
    assert folder.name == f"{first.study_uid}#whole_study"
    study = h.task(folder).study
    assert study is not None
    assert sorted(study.received_series_uid) == sorted([first.series_uid, second.series_uid])
    h.advance(299)
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(2)
    path, task = h.only_task(Stage.OUTGOING)
    assert dicom_names(path) == sop_files(first) | sop_files(second)
    assert task.info.uid == first.study_uid and task.info.uid_type == "study"
    assert task.study is not None and not task.study.complete_force
    assert task.dispatch is not None and task.dispatch.target_name == ["pacs"]
    assert h.tasks(Stage.STUDIES) == []
    assert [e.data["stage"] for e in h.events() if e.task_id == task.id] == [
        "studies",
        "studies",
        "outgoing",
    ]


def test_study_waits_while_one_of_its_series_is_still_arriving(
    make_router: Callable[..., Harness],
) -> None:
    """The timeout does not cut off a series of the study that is not complete yet."""
    h = make_router(STUDY_RULE.replace("study_complete_trigger: 300", "study_complete_trigger: 30"))
    h.send(study_series(h, 1, "T1"))
    h.advance(61)
    h.advance(20)
    late = h.send(study_series(h, 2, "T2"))
    h.advance(15)  # the study's timeout passes; its second series is still waiting
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(50)  # the second series joins the study
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(31)
    path, _task = h.only_task(Stage.OUTGOING)
    assert sop_files(late) <= dicom_names(path)


def test_study_completes_when_its_required_series_arrived(
    make_router: Callable[..., Harness],
) -> None:
    """'T1' and ('T2' or 'FLAIR'): complete as soon as T1 and FLAIR are in, not by timeout."""
    h = make_router(REQUIRED_RULE.format(force="proceed"))
    h.send(study_series(h, 1, "T1 MPRAGE", modality="MR"))
    h.advance(61)
    assert len(h.tasks(Stage.STUDIES)) == 1
    h.send(study_series(h, 2, "ax flair", modality="MR"))
    h.advance(61)
    path, task = h.only_task(Stage.PROCESSING)
    assert task.info.action == "process" and task.study is not None
    assert task.study.received_series == ["T1 MPRAGE", "ax flair"]
    assert [step.module_name for step in task.process] == ["seg"]
    assert len(dicom_names(path)) == 4


def test_forced_study_is_discarded_when_the_rule_says_so(
    make_router: Callable[..., Harness],
) -> None:
    """Required series never came: after study_forcecomplete_trigger, discard/ with why."""
    h = make_router(REQUIRED_RULE.format(force="discard"))
    h.send(study_series(h, 1, "T1", modality="MR"))
    h.advance(61)
    h.advance(3600)
    path, task = h.only_task(Stage.DISCARD)
    assert task.info.action == "discard"
    assert task.info.reason == "study_forcecomplete_trigger passed"
    assert len(dicom_names(path)) == 2
    assert [e.kind for e in h.events() if e.task_id == task.id][-1] == "task.discarded"


def test_forced_study_proceeds_with_what_it_has(make_router: Callable[..., Harness]) -> None:
    """study_force_action proceed: the incomplete study goes on to its action."""
    h = make_router(REQUIRED_RULE.format(force="proceed"))
    h.send(study_series(h, 1, "T1", modality="MR"))
    h.advance(61)
    h.advance(3600)
    _path, task = h.only_task(Stage.PROCESSING)
    assert task.study is not None and task.study.complete_force


def test_forced_study_with_ignore_keeps_waiting(make_router: Callable[..., Harness]) -> None:
    """study_force_action ignore: it stays in studies/ until its series arrive."""
    h = make_router(REQUIRED_RULE.format(force="ignore"))
    h.send(study_series(h, 1, "T1", modality="MR"))
    h.advance(61)
    h.advance(7200)
    assert len(h.tasks(Stage.STUDIES)) == 1
    h.send(study_series(h, 2, "T2", modality="MR"))
    h.advance(61)
    h.only_task(Stage.PROCESSING)


def test_series_of_a_completed_study_starts_a_new_study(
    make_router: Callable[..., Harness],
) -> None:
    """A series arriving after its study left collects in a new study folder."""
    h = make_router(STUDY_RULE)
    h.send(study_series(h, 1, "T1"))
    h.advance(61)
    h.advance(301)
    h.send(study_series(h, 2, "T2"))
    h.advance(61)
    [first] = h.tasks(Stage.OUTGOING)
    [second] = h.tasks(Stage.STUDIES)
    assert h.task(first).id != h.task(second).id


def test_study_and_series_rules_share_the_files(make_router: Callable[..., Harness]) -> None:
    """A series routed now and collected for its study: one copy on disk, two links."""
    h = make_router(
        STUDY_RULE
        + """
  now: {rule: "True", targets: archive}
"""
    )
    series = h.send(study_series(h, 1, "T1"))
    h.advance(61)
    outgoing, _task = h.only_task(Stage.OUTGOING)
    [study] = h.tasks(Stage.STUDIES)
    assert dicom_names(outgoing) == dicom_names(study) == sop_files(series)
    for name in dicom_names(study):
        assert (outgoing / name).stat().st_ino == (study / name).stat().st_ino


def test_series_without_study_uid_acts_on_its_own(make_router: Callable[..., Harness]) -> None:
    """No StudyInstanceUID, no study to collect: the rule acts on the series, and says so."""
    h = make_router(STUDY_RULE)
    series = h.send(h.series(tags={"StudyInstanceUID": None}))
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.uid == series.series_uid
    [error] = h.events("rule.error")
    assert "StudyInstanceUID" in error.data["reason"]


def test_studies_are_rebuilt_from_disk_after_a_restart(
    make_router: Callable[..., Harness],
) -> None:
    """A new router process finds the studies collecting and completes them."""
    h = make_router(STUDY_RULE)
    h.send(study_series(h, 1, "T1"))
    h.advance(61)
    again = make_router(STUDY_RULE)
    again.clock.offset = h.clock.offset
    assert list(again.router.studies) == [h.tasks(Stage.STUDIES)[0].name]
    again.advance(301)
    again.only_task(Stage.OUTGOING)


def test_invalid_required_series_is_reported_and_the_study_completes_by_timeout(
    make_router: Callable[..., Harness],
) -> None:
    """A study collecting with a study_trigger_series that cannot be parsed (the configuration
    refuses one now, but a study folder keeps what it was started with, e.g. by an older
    version): one rule.error, then the timeout."""
    h = make_router(REQUIRED_RULE.format(force="proceed"))
    h.send(study_series(h, 1, "T1", modality="MR"))
    h.advance(61)
    [folder] = h.tasks(Stage.STUDIES)
    document = json.loads((folder / "task.json").read_text())
    document["study"]["complete_required_series"] = "T1 and"
    (folder / "task.json").write_text(json.dumps(document))
    h.router.collector.states.clear()  # as after a restart: the folder is read again
    h.router.collector.sync(0.0)
    h.advance(100)
    assert len(h.tasks(Stage.STUDIES)) == 1
    h.advance(201)
    h.only_task(Stage.PROCESSING)
    [error] = h.events("rule.error")
    assert error.data["rule"] == "mr_brain" and "column 1" in error.data["reason"]


def test_damaged_study_goes_to_error_and_the_bookkeeper_is_told(
    make_router: Callable[..., Harness],
) -> None:
    """A study folder whose task.json cannot be read (written by hand, a disk fault) moves to
    error/ with the reason, and the bookkeeper hears of it like of any failed task: otherwise
    its error count would differ from the data folder's for good."""
    h = make_router(STUDY_RULE)
    first = h.send(study_series(h, 1, "T1"))
    h.advance(61)
    [folder] = h.tasks(Stage.STUDIES)
    (folder / "task.json").write_text("{ not json")
    h.router.collector.states.clear()  # as after a restart: the folder is read again
    h.router.collector.sync(0.0)
    [failed] = h.tasks(Stage.ERROR)
    assert failed.name == folder.name
    [event] = [e for e in h.events("task.failed") if e.task_id == folder.name]
    assert event.data["fail_stage"] == "router" and "not valid JSON" in event.message
    assert first.study_uid in failed.name
