"""Study collection: ``studies/<StudyInstanceUID>#<rule>/`` and when a collected study is done.

A study folder is a task folder: its ``task.json`` (with the ``study`` part) and the DICOM files
of every series collected so far, flat. Adding a series and completing a study both hold a
claim (``flock``) on the folder, so the router and ``mercure study complete`` never work on one
study at once. Completing is one rename of the folder to ``<stage>/<task id>``.

A study is complete when (see docs/router.md):

- ``timeout``: ``router.study_complete_trigger`` seconds passed since its last series arrived
  and no series of the study is still waiting in ``incoming/``;
- ``received_series``: its required series (``study_trigger_series``) have arrived;
- ``retrieve``: the study was started by a series a retrieve job fetched, and that job owes
  it nothing more (every mark of the job for the study complete, their series taken); this
  replaces the timeout while the job exists (:mod:`mercure.router.retrieved`);
- forced: ``router.study_forcecomplete_trigger`` seconds after it was created, with the rule's
  ``study_force_action``: ``proceed`` (complete as it is), ``discard`` (to ``discard/``) or
  ``ignore`` (keep waiting for the condition); or at once by ``mercure study complete UID``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mercure.core.atomic import fsync_dir
from mercure.core.claims import Claim
from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder, Stage, is_visible
from mercure.core.errors import TaskError, TransientError
from mercure.core.rules.required import RequiredSeriesError, parse_required_series
from mercure.core.studies import CompletedStudy, complete_study_folder, study_names
from mercure.core.task import TASK_FILE, Task, read_task, write_task

log = logging.getLogger(__name__)

CLAIM_WAIT = 5.0
"""Seconds to wait for a study held by another process (``mercure study complete``)."""


@dataclass
class StudyState:
    """What the router needs to know about a study being collected, read from its task.json."""

    name: str
    task_id: str
    study_uid: str
    rule: str | None
    condition: str
    required: str
    created: float
    last_receive: float
    force_action: str
    complete_force: bool
    descriptions: list[str]
    retrieve_job: str | None = None
    force_checked: bool = False
    """The force time passed with action 'ignore': do not force again."""

    @classmethod
    def from_task(cls, name: str, task: Task) -> StudyState:
        """The state of the study folder ``name`` with this task.json."""
        study = task.study
        if study is None:
            raise TaskError(f"studies/{name}: task.json has no study part")
        return cls(
            name=name,
            task_id=task.id,
            study_uid=study.study_uid,
            rule=task.info.applied_rule,
            condition=study.complete_trigger,
            required=study.complete_required_series,
            created=study.creation_time.timestamp(),
            last_receive=study.last_receive_time.timestamp(),
            force_action=study.complete_force_action,
            complete_force=study.complete_force,
            descriptions=list(study.received_series),
            retrieve_job=study.retrieve_job,
        )


@dataclass(frozen=True)
class StudyVerdict:
    """Whether a study is complete now, how, and otherwise when to look again."""

    complete: bool
    forced: bool = False
    discard: bool = False
    reason: str = ""
    check_at: float | None = None
    required_error: str | None = None


def judge_study(
    state: StudyState,
    now: float,
    config: MercureConfig,
    *,
    series_pending: bool,
    retrieve_pending: bool | None = None,
) -> StudyVerdict:
    """Decide about one study (pure: no file is touched).

    ``retrieve_pending`` is None unless the study's retrieve job exists; then it says whether
    the job still owes the study a series, and the retrieve's end replaces the timeout.
    """
    if state.complete_force:
        # Forced before (by the CLI or a crash between recording and moving): a forced discard
        # was recorded as the task's action, so the move goes to the right stage by itself.
        return StudyVerdict(True, forced=True, reason="completion was forced")
    router = config.router
    check_at: float | None = None
    required_error = None
    if state.condition == "received_series" and state.required.strip():
        try:
            required = parse_required_series(state.required)
        except RequiredSeriesError as exc:
            required = None
            required_error = str(exc)
        if required is not None and required.satisfied_by(state.descriptions):
            return StudyVerdict(True, reason="the required series arrived")
    if retrieve_pending is False:
        return StudyVerdict(True, reason=f"retrieve job {state.retrieve_job} ended for the study")
    if retrieve_pending is True:
        pass  # the retrieve's end decides (the router looks again when a mark changes)
    elif state.condition == "timeout" or required_error is not None or not state.required.strip():
        # Without a usable list of required series the study completes by timeout (as mercure).
        due = state.last_receive + router.study_complete_trigger
        if due <= now:
            if not series_pending:
                return StudyVerdict(True, reason="no new series for study_complete_trigger")
            due = now + min(1.0, router.study_complete_trigger)
        check_at = due
    force_at = state.created + router.study_forcecomplete_trigger
    if not state.force_checked:
        if force_at <= now:
            if state.force_action == "ignore":
                state.force_checked = True
            else:
                return StudyVerdict(
                    True,
                    forced=True,
                    discard=state.force_action == "discard",
                    reason="study_forcecomplete_trigger passed",
                    required_error=required_error,
                )
        else:
            check_at = force_at if check_at is None else min(check_at, force_at)
    return StudyVerdict(False, check_at=check_at, required_error=required_error)


class StudyStore:
    """The ``studies/`` stage: adding series and completing studies, each under a claim."""

    def __init__(self, data: DataFolder) -> None:
        self.data = data
        self.root = data.stage(Stage.STUDIES)

    def names(self) -> list[str]:
        """The study folders now collecting."""
        return study_names(self.data)

    def read(self, name: str) -> Task:
        """The task.json of a study folder."""
        return read_task(self.root / name)

    def add_series(self, entry: Path, name: str, now: datetime) -> tuple[Task, bool]:
        """Move the series prepared in ``entry`` into study ``name``; (study task, created).

        ``entry`` holds the series' DICOM files and a task.json for a new study of which this
        series is the first. If the study exists, the files move into it and its task.json
        gains the series; otherwise ``entry`` becomes the study folder. Safe to repeat after a
        crash: files already moved are not there any more, a series already listed is not
        listed twice. Raises :class:`TransientError` if the study stays claimed by another
        process for longer than :data:`CLAIM_WAIT`.
        """
        target = self.root / name
        deadline = time.monotonic() + CLAIM_WAIT
        while True:
            if not target.exists():
                try:
                    os.rename(entry, target)
                except OSError as exc:
                    if target.exists():
                        continue  # created meanwhile (rename refuses a non-empty folder)
                    raise TaskError(f"cannot create study folder {target}: {exc}") from exc
                fsync_dir(self.root)
                return read_task(target), True
            claim = Claim.try_take(target)
            if claim is None:
                if target.exists():
                    if time.monotonic() > deadline:
                        raise TransientError(
                            f"study folder {target} stays claimed by another process"
                        )
                    time.sleep(0.01)
                continue
            with claim:
                return self._merge(entry, target, now), False

    def _merge(self, entry: Path, target: Path, now: datetime) -> Task:
        task = read_task(target)
        prepared = read_task(entry)
        for name in os.listdir(entry):
            if name != TASK_FILE and is_visible(name):
                os.replace(entry / name, target / name)
        study = task.study
        if study is None:
            raise TaskError(f"{target}: task.json has no study part")
        added = prepared.study
        if added is not None:
            for uid, description in zip(
                added.received_series_uid, added.received_series, strict=False
            ):
                if uid not in study.received_series_uid:
                    study.received_series_uid.append(uid)
                    study.received_series.append(description)
        study.last_receive_time = now
        write_task(target, task)
        os.unlink(entry / TASK_FILE)
        os.rmdir(entry)
        fsync_dir(entry.parent)
        return task

    def complete(
        self, name: str, *, forced: bool = False, discard: bool = False, reason: str = ""
    ) -> CompletedStudy | None:
        """Move study ``name`` on (:func:`mercure.core.studies.complete_study_folder`)."""
        return complete_study_folder(self.data, name, forced=forced, discard=discard, reason=reason)
