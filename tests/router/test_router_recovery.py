"""A router stopped at any step of routing a series finishes it once, after a restart."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from router_harness import Harness, dicom_names, sop_files

from mercure.core.datafolder import Stage
from mercure.core.task import Task, TaskDispatch, TaskInfo, new_task_id
from mercure.router.routing import (
    BUILT_FILE,
    Plan,
    PlanEntry,
    RoutingWork,
    claim_series,
    execute,
    leftover_work,
)
from mercure.testing.series import GeneratedSeries

ROUTE_ALL = """
rules:
  everything: {rule: "True", targets: pacs}
"""


class Crash(Exception):
    """Stands for the process dying at this point."""


def claimed(h: Harness, series: GeneratedSeries) -> RoutingWork:
    """A series written to incoming/ and claimed for routing (step 1 done)."""
    h.writer.send(series)
    work = claim_series(h.data, series.series_uid, lambda _folder: True)
    assert work is not None
    return work


def three_task_plan(series: GeneratedSeries) -> Plan:
    """Two tasks built from hard links and a last one that takes the series folder."""
    entries = []
    for stage in (Stage.OUTGOING, Stage.PROCESSING, Stage.OUTGOING):
        task = Task(
            id=new_task_id(),
            info=TaskInfo(action="route", uid=series.series_uid),
            dispatch=TaskDispatch(target_name=["pacs"]),
        )
        entries.append(
            PlanEntry(kind="task", id=task.id, stage=stage, task=task.model_dump(mode="json"))
        )
    entries[-1].take = True
    return Plan(series_uid=series.series_uid, entries=entries)


def crash_after(count: int) -> Callable[[PlanEntry, Path], None]:
    """An on_task callback that lets ``count`` tasks arrive, then 'dies'."""
    arrived: list[str] = []

    def on_task(entry: PlanEntry, path: Path) -> None:
        arrived.append(entry.id)
        if len(arrived) > count:
            raise Crash(entry.id)

    return on_task


def no_study(entry: PlanEntry, path: Path) -> None:
    """Study entries do not occur in these plans."""
    raise AssertionError("unexpected study entry")


def assert_plan_done_once(h: Harness, plan: Plan, series: GeneratedSeries) -> None:
    """Each task of the plan exists once, complete, and nothing is left behind."""
    for entry in plan.entries:
        assert entry.stage is not None
        homes = [s for s in Stage if (h.data.stage(s) / entry.id).exists()]
        assert homes == [entry.stage]
        folder = h.data.stage(entry.stage) / entry.id
        assert dicom_names(folder) == sop_files(series)
        assert sorted(os.listdir(folder)) == sorted([*sop_files(series), "task.json"])
        assert h.task(folder).id == entry.id
    assert sum(len(h.tasks(s)) for s in Stage) == len(plan.entries)
    assert h.incoming_left() == []


@pytest.mark.parametrize("survivors", [0, 1, 2])
def test_restart_after_some_tasks_left_finishes_the_rest_once(
    make_router: Callable[..., Harness], survivors: int
) -> None:
    """Tasks that reached their stage before the crash are not made again."""
    h = make_router(ROUTE_ALL, start=False)
    series = h.series(4)
    work = claimed(h, series)
    plan = three_task_plan(series)
    work.write_plan(plan)
    with pytest.raises(Crash):
        execute(work, plan, h.data, crash_after(survivors), no_study)
    work.release()
    h.router.start()
    assert_plan_done_once(h, plan, series)


def test_restart_after_the_plan_was_written_builds_and_moves_everything(
    make_router: Callable[..., Harness],
) -> None:
    """A plan with nothing built yet is carried out as written (not decided again)."""
    h = make_router(ROUTE_ALL, start=False)
    series = h.series(4)
    work = claimed(h, series)
    plan = three_task_plan(series)
    work.write_plan(plan)
    work.release()
    h.router.start()
    assert_plan_done_once(h, plan, series)


def test_half_built_task_is_built_again_completely(make_router: Callable[..., Harness]) -> None:
    """A task folder with only some of its links (no 'built' marker) is completed."""
    h = make_router(ROUTE_ALL, start=False)
    series = h.series(4)
    work = claimed(h, series)
    plan = three_task_plan(series)
    work.write_plan(plan)
    partial = work.tasks_dir / plan.entries[0].id
    partial.mkdir(parents=True)
    first = sorted(sop_files(series))[0]
    os.link(work.series_dir / first, partial / first)
    assert not (work.folder / BUILT_FILE).exists()
    work.release()
    h.router.start()
    assert_plan_done_once(h, plan, series)


def test_restart_after_the_claim_routes_the_series_once(
    make_router: Callable[..., Harness],
) -> None:
    """Claimed but not yet decided: the restarted router decides and routes it."""
    h = make_router(ROUTE_ALL, start=False)
    series = h.series(4)
    claimed(h, series).release()
    h.router.start()
    path, task = h.only_task(Stage.OUTGOING)
    assert task.info.uid == series.series_uid
    assert dicom_names(path) == sop_files(series)
    assert h.incoming_left() == []


def test_work_held_by_a_live_router_is_left_alone(make_router: Callable[..., Harness]) -> None:
    """Recovery only takes work folders nobody holds (several routers may share a folder)."""
    h = make_router(ROUTE_ALL, start=False)
    work = claimed(h, h.series())
    assert list(leftover_work(h.data)) == []
    work.release()
    found = list(leftover_work(h.data))
    assert [w.folder for w in found] == [work.folder]
    for other in found:
        other.release()


def test_routing_error_is_retried_then_the_series_goes_to_error(
    make_router: Callable[..., Harness],
) -> None:
    """A task id already taken in its stage cannot be fixed by retrying: error/, with why."""
    h = make_router(ROUTE_ALL, start=False)
    series = h.series(3)
    work = claimed(h, series)
    plan = three_task_plan(series)
    work.write_plan(plan)
    work.release()
    blocker = h.data.stage(Stage.OUTGOING) / plan.entries[0].id
    blocker.mkdir()
    (blocker / "keep").write_text("someone else's")
    h.router.start()
    [failed] = h.tasks(Stage.ERROR)
    task = h.task(failed)
    assert task.info.fail_stage == "router" and "already there" in (task.info.reason or "")
    assert dicom_names(failed) == sop_files(series)
    assert (failed / "error.json").exists()
    assert h.incoming_left() == []
    assert [e.series_uid for e in h.events("series.error")] == [series.series_uid]
