"""When a series is complete: quiet time, its overrides, release, senders still delivering."""

from __future__ import annotations

from collections.abc import Callable

from router_harness import Harness, dicom_names, sop_files

from mercure.core.datafolder import Stage

ROUTE_ALL = """
rules:
  everything: {rule: "True", targets: pacs}
"""


def test_later_instances_restart_the_quiet_time(make_router: Callable[..., Harness]) -> None:
    """Instances 50 s apart belong to one series: it is routed 60 s after the last."""
    h = make_router(ROUTE_ALL)
    first = h.send(h.series(3, seed=77))
    h.advance(50)
    second = h.send(h.series(3, seed=77, first_instance_number=4))
    assert second.series_uid == first.series_uid
    h.advance(50)
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(11)
    path, _task = h.only_task(Stage.OUTGOING)
    assert dicom_names(path) == sop_files(first) | sop_files(second)


def test_series_held_by_a_sender_is_not_claimed(make_router: Callable[..., Harness]) -> None:
    """An association still open on the series keeps it in incoming/ past the quiet time."""
    h = make_router(ROUTE_ALL)
    series = h.series(4)
    with h.writer.association() as association:
        for instance in series.instances:
            association.store(instance.path, series.series_uid, instance.sop_instance_uid)
        h.notify(series.series_uid)
        h.advance(120)
        assert h.tasks(Stage.OUTGOING) == []
        assert (h.data.stage(Stage.INCOMING) / series.series_uid).is_dir()
    h.router.on_journal(series.series_uid)  # the release line
    h.advance(1)
    path, _task = h.only_task(Stage.OUTGOING)
    assert dicom_names(path) == sop_files(series)


def test_release_completes_after_the_grace_period(make_router: Callable[..., Harness]) -> None:
    """complete_on_release: routed release_grace after the association ended, not 60 s."""
    h = make_router(
        ROUTE_ALL
        + """
receiver:
  listeners: [{name: modalities, port: 11112, complete_on_release: true, release_grace: 2}]
"""
    )
    series = h.send(h.series(), listener="modalities")
    h.advance(1.5)
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(1)
    h.only_task(Stage.OUTGOING)
    [complete] = h.events("series.complete")
    assert complete.series_uid == series.series_uid
    assert complete.data["completed_by"] == "release (modalities)"


def test_aborted_association_waits_for_the_quiet_time(make_router: Callable[..., Harness]) -> None:
    """Without a release line, complete_on_release does not apply."""
    h = make_router(
        ROUTE_ALL
        + """
receiver:
  listeners: [{name: modalities, port: 11112, complete_on_release: true, release_grace: 2}]
"""
    )
    h.send(h.series(), listener="modalities", released=False)
    h.advance(10)
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(51)
    h.only_task(Stage.OUTGOING)


def test_calling_ae_title_overrides_the_quiet_time(make_router: Callable[..., Harness]) -> None:
    """A slow modality's series waits its own, longer time; others do not."""
    h = make_router(
        ROUTE_ALL
        + """
router:
  series_complete_trigger: 60
  series_complete_trigger_by_calling_aet: {SLOWCT: 300}
  rescan_interval: 600
"""
    )
    slow = h.send(h.series(), calling_aet="SLOWCT")
    fast = h.send(h.series(), calling_aet="FASTCT")
    h.advance(61)
    assert uids(h, Stage.OUTGOING) == {fast.series_uid}
    h.advance(240)
    assert uids(h, Stage.OUTGOING) == {fast.series_uid, slow.series_uid}


def uids(h: Harness, stage: Stage) -> set[str]:
    """The series (or study) UIDs of the tasks in a stage."""
    return {h.task(path).info.uid for path in h.tasks(stage)}


def test_listener_overrides_the_quiet_time(make_router: Callable[..., Harness]) -> None:
    """Series from a listener with its own series_complete_trigger use it."""
    h = make_router(
        ROUTE_ALL
        + """
receiver:
  listeners:
    - {name: default, port: 11112}
    - {name: quick, port: 11113, series_complete_trigger: 10}
"""
    )
    quick = h.send(h.series(), listener="quick")
    h.send(h.series(), listener="default")
    h.advance(11)
    assert uids(h, Stage.OUTGOING) == {quick.series_uid}


def test_rule_overrides_the_quiet_time_for_the_series_it_selects(
    make_router: Callable[..., Harness],
) -> None:
    """A rule's series_complete_trigger applies to the series it would select."""
    h = make_router(
        """
rules:
  ct: {rule: "tags.Modality == 'CT'", targets: pacs, series_complete_trigger: 120}
  rest: {rule: "True", targets: archive}
"""
    )
    ct = h.send(h.series(modality="CT"))
    mr = h.send(h.series(modality="MR"))
    h.advance(61)
    assert uids(h, Stage.OUTGOING) == {mr.series_uid}
    h.advance(60)
    assert uids(h, Stage.OUTGOING) == {mr.series_uid, ct.series_uid}


def test_late_instance_starts_new_series(make_router: Callable[..., Harness]) -> None:
    """An instance arriving after its series was routed becomes a task of its own."""
    h = make_router(ROUTE_ALL)
    early = h.send(h.series(3, seed=5))
    h.advance(61)
    late = h.send(h.series(1, seed=5, first_instance_number=9))
    h.advance(61)
    tasks = h.tasks(Stage.OUTGOING)
    assert len(tasks) == 2
    assert {h.task(p).info.uid for p in tasks} == {early.series_uid}
    assert sorted(len(dicom_names(p)) for p in tasks) == [1, 3]
    assert set().union(*(dicom_names(p) for p in tasks)) == sop_files(early) | sop_files(late)


def test_series_waiting_before_start_are_found(make_router: Callable[..., Harness]) -> None:
    """State is rebuilt from disk: a series written while no router ran is routed."""
    h = make_router(ROUTE_ALL, start=False)
    series = h.series()
    h.writer.send(series)
    h.router.start()
    h.advance(61)
    path, _task = h.only_task(Stage.OUTGOING)
    assert dicom_names(path) == sop_files(series)


def test_rescan_finds_series_missed_by_notifications(make_router: Callable[..., Harness]) -> None:
    """Without a notification, the periodic rescan finds and routes the series."""
    h = make_router(ROUTE_ALL)
    h.writer.send(h.series())
    h.advance(61)
    assert h.tasks(Stage.OUTGOING) == []
    h.advance(600)
    h.only_task(Stage.OUTGOING)


def test_changed_quiet_time_applies_to_waiting_series(make_router: Callable[..., Harness]) -> None:
    """A configuration change shortens the wait of series already waiting."""
    h = make_router(ROUTE_ALL)
    h.send(h.series())
    h.advance(5)
    h.reconfigure(ROUTE_ALL + "\nrouter: {series_complete_trigger: 10, rescan_interval: 600}\n")
    h.advance(6)
    h.only_task(Stage.OUTGOING)
