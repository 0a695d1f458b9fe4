"""Claiming a complete series and turning it into tasks so that a crash at any point is safe.

A series is routed inside a work folder, ``incoming/.routing/<series>#<token>/``, which the
router holds a claim (``flock``) on from start to end::

    series/      the series folder, renamed out of incoming/ as the claim
    plan.json    the decision: every task (document and stage) and study entry, written once
    tasks/<id>/  tasks being built: hard links to series/ and task.json
    built        marker: every task in the plan is complete in tasks/

The steps, and what a restarted router does when it finds the folder (``recover``):

1. rename ``incoming/<series>`` to ``series/`` (holding the series' lock, so no sender is
   delivering): until ``plan.json`` exists, recovery decides again from ``series/``;
2. write ``plan.json``: from now on recovery follows the plan, never decides again;
3. build each task in ``tasks/`` (except the one that takes ``series/`` itself), then write
   ``built``: before it, recovery builds again from scratch (nothing has left yet);
4. rename each ``tasks/<id>`` into its stage, or move it into its study; a task no longer in
   ``tasks/`` has left, so recovery never sends one twice. The last task of the plan may take
   ``series/`` itself (one rename instead of a hard link per file);
5. delete ``series/`` (if it is still there), ``tasks/``, ``plan.json``, ``built``, the folder.

So every series is routed once, or, after a crash, finished along the same plan; files never
stay behind in ``incoming/``.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from mercure.core.atomic import atomic_write_json, atomic_write_text, fsync_dir
from mercure.core.claims import Claim
from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder, Stage, is_visible
from mercure.core.errors import TaskError
from mercure.core.task import ERROR_FILE, Task, TaskInfo, new_task_id, write_task

log = logging.getLogger(__name__)

ROUTING_DIR = ".routing"
SERIES_DIR = "series"
TASKS_DIR = "tasks"
PLAN_FILE = "plan.json"
BUILT_FILE = "built"
DICOM_SUFFIX = ".dcm"


class PlanEntry(BaseModel):
    """One thing the plan does with the series: a task in a stage, or a study to join."""

    kind: Literal["task", "study"]
    id: str
    stage: Stage | None = None
    study_folder: str | None = None
    take: bool = False
    """This task takes the series folder itself instead of hard links (at most one, last)."""
    task: dict[str, Any]


class Plan(BaseModel):
    """What routing a series does, written before anything leaves the work folder."""

    version: int = 1
    series_uid: str
    study_uid: str | None = None
    entries: list[PlanEntry]
    notify: list[str] = []
    """Notification rules that fired: their events are sent once the plan is carried out."""


class RoutingWork:
    """A series claimed for routing: its work folder, held by this process."""

    def __init__(self, folder: Path, claim: Claim) -> None:
        self.folder = folder
        self._claim = claim

    @property
    def series_dir(self) -> Path:
        """The series folder as it was in incoming/."""
        return self.folder / SERIES_DIR

    @property
    def tasks_dir(self) -> Path:
        """Where tasks are built."""
        return self.folder / TASKS_DIR

    @property
    def series_name(self) -> str:
        """The name the series had in incoming/ (its SeriesInstanceUID)."""
        return self.folder.name.rsplit("#", 1)[0]

    def dicom_names(self) -> list[str]:
        """The instance files of the series, in name order."""
        try:
            names = os.listdir(self.series_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(DICOM_SUFFIX) and is_visible(n))

    def read_plan(self) -> Plan | None:
        """The plan, or None if routing had not got that far."""
        try:
            return Plan.model_validate_json((self.folder / PLAN_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            # A plan is written atomically, so this is damage from outside: decide again.
            log.error("%s: unreadable plan, routing the series again: %s", self.folder, exc)
            return None

    def write_plan(self, plan: Plan) -> None:
        """Record the decision (atomically): from now on the plan is followed."""
        atomic_write_text(self.folder / PLAN_FILE, plan.model_dump_json(indent=1))

    def release(self) -> None:
        """Give up the claim (the folder itself is left as it is)."""
        self._claim.release()


def routing_root(data: DataFolder) -> Path:
    """``incoming/.routing``: work folders of series being routed."""
    return data.stage(Stage.INCOMING) / ROUTING_DIR


def claim_series(
    data: DataFolder, name: str, still_complete: Callable[[Path], bool]
) -> RoutingWork | None:
    """Take ``incoming/<name>`` for routing; None if a sender still holds it or it is gone.

    ``still_complete`` is asked once the series' lock is held (no sender can add to it then);
    if it says no, the series stays where it is.
    """
    source = data.stage(Stage.INCOMING) / name
    series_claim = Claim.try_take(source)
    if series_claim is None:
        return None
    with series_claim:
        if not still_complete(source):
            return None
        root = routing_root(data)
        root.mkdir(exist_ok=True)
        folder = root / f"{name}#{secrets.token_hex(6)}"
        folder.mkdir()
        work_claim = Claim.try_take(folder)
        if work_claim is None:  # another router's recovery removed it at this very moment
            return None
        try:
            os.rename(source, folder / SERIES_DIR)
        except FileNotFoundError:  # the work folder was removed by another router's recovery
            work_claim.release()
            return None
        fsync_dir(source.parent)
        fsync_dir(folder)
    return RoutingWork(folder, work_claim)


def leftover_work(data: DataFolder) -> Iterator[RoutingWork]:
    """Work folders no live process holds (left by a router that stopped mid-way)."""
    root = routing_root(data)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    for name in names:
        claim = Claim.try_take(root / name)
        if claim is not None:
            yield RoutingWork(root / name, claim)


OnTask = Callable[[PlanEntry, Path], None]
OnStudy = Callable[[PlanEntry, Path], None]


def execute(
    work: RoutingWork, plan: Plan, data: DataFolder, on_task: OnTask, on_study: OnStudy
) -> None:
    """Carry out ``plan`` (steps 3 to 5); repeating it after a crash finishes the same plan.

    ``on_task(entry, path)`` is called for each task that reached its stage, ``on_study(entry,
    entry_folder)`` must move a study entry's prepared folder into its study.
    """
    built = work.folder / BUILT_FILE
    to_build = [entry for entry in plan.entries if not entry.take]
    if to_build and not built.exists():
        if not work.series_dir.exists():
            log.error("%s: plan without series and not built; nothing left to do", work.folder)
            finish(work)
            return
        names = work.dicom_names()
        work.tasks_dir.mkdir(exist_ok=True)
        for entry in to_build:
            _build(work, work.tasks_dir / entry.id, names, entry.task)
        fsync_dir(work.tasks_dir)
        atomic_write_text(built, "")
    touched: set[Path] = set()
    for entry in to_build:
        path = work.tasks_dir / entry.id
        if not path.exists():
            continue  # left already, before a crash
        if entry.kind == "study":
            on_study(entry, path)
            continue
        destination = _stage_path(data, entry)
        _rename_task(path, destination)
        touched.add(destination.parent)
        on_task(entry, destination)
    for entry in plan.entries:
        if entry.take and work.series_dir.exists():
            destination = _stage_path(data, entry)
            _tidy_for_task(work.series_dir, entry.task)
            _rename_task(work.series_dir, destination)
            touched.add(destination.parent)
            on_task(entry, destination)
    for folder in touched:
        fsync_dir(folder)
    finish(work)


def finish(work: RoutingWork) -> None:
    """Delete the work folder (step 5) in the order that keeps recovery right, then release."""
    _remove_tree(work.series_dir)
    _remove_tree(work.tasks_dir)
    for name in (PLAN_FILE, BUILT_FILE):
        (work.folder / name).unlink(missing_ok=True)
    _remove_tree(work.folder)
    fsync_dir(work.folder.parent)
    work.release()


def fail_work(work: RoutingWork, data: DataFolder, reason: str) -> Task | None:
    """Give up on a series: what is left of it goes to ``error/`` with the reason.

    The series folder holds every instance until the last task took it, so it is what goes to
    ``error/`` (as a task with ``error.json``); tasks already in their stages stay there, tasks
    still being built are dropped (they are hard links to the same files). Returns the error
    task, or None if nothing was left to keep. The work folder is removed either way.
    """
    task = None
    if work.series_dir.is_dir() and work.dicom_names():
        plan = work.read_plan()
        action = plan.entries[0].task["info"]["action"] if plan and plan.entries else "route"
        task = Task(
            id=new_task_id(),
            info=TaskInfo(action=action, uid=work.series_name, fail_stage="router", reason=reason),
        )
        record = {
            "fail_stage": "router",
            "reason": reason,
            "service": "router",
            "time": utcnow().isoformat(),
        }
        atomic_write_json(work.series_dir / ERROR_FILE, record)
        write_task(work.series_dir, task)
        _rename_task(work.series_dir, data.stage(Stage.ERROR) / task.id)
        fsync_dir(data.stage(Stage.ERROR))
    finish(work)
    return task


def _stage_path(data: DataFolder, entry: PlanEntry) -> Path:
    if entry.stage is None:
        raise TaskError(f"plan entry {entry.id} has no stage")
    return data.stage(entry.stage) / entry.id


def _build(work: RoutingWork, folder: Path, names: list[str], document: dict[str, Any]) -> None:
    """Make ``folder`` a complete task: hard links to every instance and its task.json."""
    folder.mkdir(exist_ok=True)
    present = set(os.listdir(folder))
    series = work.series_dir
    for name in names:
        if name not in present:
            os.link(series / name, folder / name)
    write_task(folder, Task.model_validate(document))


def _tidy_for_task(folder: Path, document: dict[str, Any]) -> None:
    """Turn the series folder into a task folder: only instances and task.json stay."""
    for name in os.listdir(folder):
        if name.endswith(DICOM_SUFFIX) and is_visible(name):
            continue
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    write_task(folder, Task.model_validate(document))


def _rename_task(source: Path, destination: Path) -> None:
    if destination.exists():
        raise TaskError(f"cannot move task to {destination}: a task of that id is already there")
    os.rename(source, destination)


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
