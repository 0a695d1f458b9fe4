"""Series fetched by a retrieve job: marks in retrieve/series/ hold, tag, force and complete them.

The marks are written here with :func:`mercure.core.retrievemarks.write_mark`, as the retriever
writes them: that file is the contract between the two services.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from router_harness import Harness, RouterProcess, dicom_names, service_config, sop_files

from mercure.core.datafolder import Stage
from mercure.core.heartbeat import read_heartbeats
from mercure.core.retrievemarks import (
    RetrieveMark,
    job_dir,
    mark_path,
    write_mark,
)
from mercure.core.task import ERROR_FILE, read_task
from mercure.router.routing import claim_series, execute
from mercure.router.simulate import IncomingWriter
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

JOB_RULES = """
rules:
  from_lab42: {rule: "tags.RetrieveJob == 'lab42' and tags.RetrieveSource == 'pacs'", targets: pacs}
  never: {rule: "tags.Modality == 'XX'", targets: archive}
  switched_off: {rule: "True", targets: archive, disabled: true}
"""

STUDY_RULES = """
router:
  series_complete_trigger: 60
  study_complete_trigger: 300
  study_forcecomplete_trigger: 36000
  rescan_interval: 100000
rules:
  whole_study:
    rule: "tags.RetrieveJob == 'lab42'"
    targets: pacs
    action_trigger: study
"""


def mark(
    h: Harness,
    series: GeneratedSeries,
    *,
    complete: bool = False,
    rule: str | None = None,
    job: str = "lab42",
    notify: bool = True,
) -> None:
    """Write the series' mark as the retriever does (and tell the router, as inotify would)."""
    job_dir(h.data, job).mkdir(parents=True, exist_ok=True)
    write_mark(
        h.data,
        series.series_uid,
        RetrieveMark(job=job, source="pacs", study=series.study_uid, rule=rule, complete=complete),
    )
    if notify:
        h.router.on_mark(series.series_uid)


def test_series_of_a_running_retrieve_waits_past_its_quiet_time(
    make_router: Callable[..., Harness],
) -> None:
    """An incomplete mark holds the series; marked complete, it is routed with the job's tags."""
    h = make_router(JOB_RULES)
    series = h.series(3)
    mark(h, series)
    h.send(series)
    h.advance(3600)
    assert h.tasks(Stage.OUTGOING) == []
    assert h.router.waiting_for_retrieve() == {"lab42": 1}
    mark(h, series, complete=True)
    h.run()
    path, task = h.only_task(Stage.OUTGOING)
    assert task.info.applied_rule == "from_lab42"
    assert dicom_names(path) == sop_files(series)
    assert not mark_path(h.data, series.series_uid).exists()
    assert h.router.waiting_for_retrieve() == {}
    [complete] = h.events("series.complete")
    assert complete.data["retrieve_job"] == "lab42"
    assert complete.data["completed_by"] == "retrieve job lab42"
    [received] = h.events("series.received")
    assert received.data["tags"]["RetrieveJob"] == "lab42"
    assert received.data["tags"]["RetrieveSource"] == "pacs"


def test_series_marked_complete_is_routed_without_a_quiet_time(
    make_router: Callable[..., Harness],
) -> None:
    """A complete mark: the series is due the moment it is seen."""
    h = make_router(JOB_RULES)
    series = h.series(2)
    mark(h, series, complete=True)
    h.send(series)
    h.run()
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.applied_rule == "from_lab42"


def test_mark_of_a_deleted_job_is_ignored(make_router: Callable[..., Harness]) -> None:
    """Job folder gone: the quiet time applies and the series has no job tags."""
    h = make_router(JOB_RULES)
    series = h.series(2)
    mark(h, series)
    h.send(series)
    h.advance(61)
    assert h.incoming_left() == [series.series_uid]
    shutil.rmtree(job_dir(h.data, "lab42"))
    h.router.on_job_removed("lab42")
    h.run()
    _path, task = h.only_task(Stage.DISCARD)
    assert task.info.reason == "no rule selected the series"
    assert h.events("rule.error") == []  # a rule reading a missing tag is just false


def test_rescan_notices_a_mark_change_that_was_not_reported(
    make_router: Callable[..., Harness],
) -> None:
    """Without the notification, the periodic rescan finds the completed mark."""
    h = make_router(JOB_RULES + "router: {series_complete_trigger: 60, rescan_interval: 600}\n")
    series = h.series(2)
    mark(h, series)
    h.send(series)
    h.advance(300)
    assert h.tasks(Stage.OUTGOING) == []
    mark(h, series, complete=True, notify=False)
    h.advance(200)
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(101)
    h.only_task(Stage.OUTGOING)


def test_forced_rule_applies_whatever_its_expression_says(
    make_router: Callable[..., Harness],
) -> None:
    """The job's rule alone routes the series, though it would not fire and another would."""
    h = make_router(JOB_RULES)
    series = h.series(2)
    mark(h, series, complete=True, rule="never")
    h.send(series)
    h.run()
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.applied_rule == "never"
    assert task.dispatch is not None
    assert task.dispatch.target_name == ["archive"]


def test_unknown_or_disabled_forced_rule_sends_the_series_to_error(
    make_router: Callable[..., Harness],
) -> None:
    """A forced rule that cannot apply: error/ with the reason, the mark removed."""
    h = make_router(JOB_RULES)
    for rule, why in (("gone", "not in the configuration"), ("switched_off", "is disabled")):
        series = h.series(2)
        mark(h, series, complete=True, rule=rule)
        h.send(series)
        h.run()
        [path] = [p for p in h.tasks(Stage.ERROR) if h.task(p).info.uid == series.series_uid]
        reason = json.loads((path / ERROR_FILE).read_text())["reason"]
        assert f"retrieve job lab42 forces rule '{rule}'" in reason
        assert why in reason
        assert dicom_names(path) == sop_files(series)
        assert not mark_path(h.data, series.series_uid).exists()
    assert h.tasks(Stage.OUTGOING) == []


def test_study_of_a_retrieve_completes_when_the_job_owes_it_nothing(
    make_router: Callable[..., Harness],
) -> None:
    """Not the study timeout: the study leaves once every series of the job's study is in."""
    h = make_router(STUDY_RULES)
    first = h.series(2, seed=42, series_number=1)
    second = h.series(2, seed=42, series_number=2)
    mark(h, first)
    mark(h, second)
    h.send(first)
    mark(h, first, complete=True)
    h.run()
    [folder] = h.tasks(Stage.STUDIES)
    study = h.task(folder).study
    assert study is not None and study.retrieve_job == "lab42"
    h.advance(3600)  # far past study_complete_trigger: the second series is still owed
    assert h.tasks(Stage.OUTGOING) == []
    h.send(second)
    mark(h, second, complete=True)
    h.run()
    path, task = h.only_task(Stage.OUTGOING)
    assert dicom_names(path) == sop_files(first) | sop_files(second)
    assert task.study is not None
    [moved] = [e for e in h.events("task.update") if e.data.get("stage") == "outgoing"]
    assert "retrieve job lab42" in moved.message


def test_study_is_not_held_by_a_series_the_source_listed_but_never_sent(
    make_router: Callable[..., Harness],
) -> None:
    """A complete mark without its series: the retrieve ended, the study completes."""
    h = make_router(STUDY_RULES)
    first = h.series(2, seed=42, series_number=1)
    never = h.series(2, seed=42, series_number=2)
    mark(h, first, complete=True)
    mark(h, never, complete=True)
    h.send(first)
    h.run()
    path, _task = h.only_task(Stage.OUTGOING)
    assert dicom_names(path) == sop_files(first)


def test_restart_before_the_decision_still_sees_the_mark(
    make_router: Callable[..., Harness],
) -> None:
    """Claimed, then the router died: the restarted router routes it with the job's tags."""
    h = make_router(JOB_RULES, start=False)
    series = h.series(2)
    mark(h, series, complete=True, notify=False)
    h.writer.send(series)
    work = claim_series(h.data, series.series_uid, lambda _folder: True)
    assert work is not None
    work.release()
    h.router.start()
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.applied_rule == "from_lab42"
    assert not mark_path(h.data, series.series_uid).exists()


@pytest.mark.slow
def test_router_process_learns_of_marks_and_job_deletion_by_notification(tmp_path: Path) -> None:
    """The service: a waiting series shows in its heartbeat, and leaves as soon as its mark
    says complete (the rescan is ten minutes away); a deleted job frees its series."""
    config, data = service_config(tmp_path, JOB_RULES)
    writer = IncomingWriter(data.root)
    finished = generate_series(tmp_path / "finished", "tiny", 2, seed=1)
    abandoned = generate_series(tmp_path / "abandoned", "tiny", 2, seed=2)
    for series, job in ((finished, "lab42"), (abandoned, "old")):
        job_dir(data, job).mkdir()
        write_mark(data, series.series_uid, RetrieveMark(job, "pacs", series.study_uid))
    with RouterProcess(config, data):
        for series in (finished, abandoned):
            writer.send(series)

        def detail() -> str:
            return next(b.detail for b in read_heartbeats(data.run_dir) if b.service == "router")

        wait_until(
            lambda: (
                "1 series waiting for retrieve job lab42" in detail()
                and "1 series waiting for retrieve job old" in detail()
            ),
            timeout=15,
        )
        write_mark(
            data,
            finished.series_uid,
            RetrieveMark("lab42", "pacs", finished.study_uid, complete=True),
        )
        wait_until(lambda: data.entries(Stage.OUTGOING), timeout=15)
        shutil.rmtree(job_dir(data, "old"))
        wait_until(lambda: data.entries(Stage.DISCARD), timeout=15)
    [outgoing] = data.entries(Stage.OUTGOING)
    assert read_task(outgoing).info.uid == finished.series_uid
    [discarded] = data.entries(Stage.DISCARD)
    assert read_task(discarded).info.uid == abandoned.series_uid
    assert not mark_path(data, finished.series_uid).exists()


def test_mark_stays_until_a_plan_left_by_a_crash_is_carried_out(
    make_router: Callable[..., Harness],
) -> None:
    """Killed after one task left: the mark is still there; the restart finishes the plan
    and only then removes it."""
    from test_router_recovery import Crash, claimed, crash_after, no_study, three_task_plan

    h = make_router(JOB_RULES, start=False)
    series = h.series(3)
    mark(h, series, complete=True, notify=False)
    work = claimed(h, series)
    plan = three_task_plan(series)
    work.write_plan(plan)
    with pytest.raises(Crash):
        execute(work, plan, h.data, crash_after(1), no_study)
    work.release()
    assert mark_path(h.data, series.series_uid).exists()
    h.router.start()
    assert len(h.tasks(Stage.OUTGOING)) + len(h.tasks(Stage.PROCESSING)) == 3
    assert not mark_path(h.data, series.series_uid).exists()


def test_study_completes_when_its_last_owed_series_goes_elsewhere(
    make_router: Callable[..., Harness],
) -> None:
    """The last series of the job's study is taken by a series rule: the study leaves too."""
    h = make_router(
        STUDY_RULES.replace("tags.RetrieveJob == 'lab42'", "tags.SeriesDescription == 'T1'")
        + "  t2_alone: {rule: \"tags.SeriesDescription == 'T2'\", targets: archive}\n"
    )
    first = h.series(2, seed=42, series_number=1, series_description="T1")
    second = h.series(2, seed=42, series_number=2, series_description="T2")
    mark(h, first)
    mark(h, second)
    h.send(first)
    mark(h, first, complete=True)
    h.run()
    assert len(h.tasks(Stage.STUDIES)) == 1
    h.send(second)
    mark(h, second, complete=True)
    h.run()
    assert h.tasks(Stage.STUDIES) == []
    routed = {h.task(p).info.applied_rule: dicom_names(p) for p in h.tasks(Stage.OUTGOING)}
    assert routed == {"whole_study": sop_files(first), "t2_alone": sop_files(second)}
