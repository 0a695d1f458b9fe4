"""The job folder: what ``mercure retrieve`` writes and the retriever service works from.

::

    retrieve/jobs/<job_id>/          mode 0700: accession numbers are patient data
      job.json        the request (source, accessions, series filter, rule, offpeak, created);
                      written once by the CLI, never changed
      control.json    what the operator wants: {"action": "run" | "pause" | "cancel", "time"};
                      rewritten (atomically) by ``mercure retrieve pause|resume|cancel``
      state.json      the progress, rewritten (atomically) by the service after every change:
                      the job's state and one entry per study

Every file is written to a temporary name and renamed into place (mode 0600), so the CLI and
the service never see half a file. Only the service writes ``state.json``; only the CLI writes
``job.json`` and ``control.json``. A job is run by one process at a time: the service holds an
``flock`` on the job folder (:class:`mercure.core.claims.Claim`) while it runs it, which the
kernel drops however the process ends.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mercure.core.atomic import atomic_write_text
from mercure.core.clock import time_ordered_id, utcnow
from mercure.core.datafolder import DataFolder
from mercure.core.errors import MercureError
from mercure.core.retrievemarks import job_dir

JOB_FILE = "job.json"
CONTROL_FILE = "control.json"
STATE_FILE = "state.json"
FILE_MODE = 0o600
FOLDER_MODE = 0o700

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A job id: safe as a folder name and easy to write in a rule (``tags.RetrieveJob == 'x'``)."""

JobState = Literal["queued", "waiting-offpeak", "running", "paused", "done", "failed", "cancelled"]
"""As :data:`mercure.bookkeeper.kinds.RETRIEVE_JOB_STATES`."""
FINISHED: tuple[JobState, ...] = ("done", "failed", "cancelled")
StudyState = Literal["pending", "running", "done", "failed"]
Action = Literal["run", "pause", "cancel"]


_M = TypeVar("_M", bound=BaseModel)


class JobError(MercureError):
    """A job request or job folder that cannot be used (the message says which and why)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class JobRequest(_Model):
    """``job.json``: what the operator asked for. Written once."""

    version: int = 1
    id: str
    source: str
    accessions: list[str]
    series_filter: str | None = None
    rule: str | None = None
    offpeak: bool = False
    created: datetime = Field(default_factory=utcnow)


class Control(_Model):
    """``control.json``: run, pause or cancel, as the operator last said."""

    action: Action = "run"
    time: datetime = Field(default_factory=utcnow)


class SeriesProgress(_Model):
    """One selected series of a study: how many instances the source listed, how many came."""

    expected: int | None = None
    retrieved: int = 0


class StudyProgress(_Model):
    """One study of the job. Before the C-FIND/QIDO by accession it has no ``study_uid``."""

    accession: str
    study_uid: str | None = None
    state: StudyState = "pending"
    attempts: int = 0
    next_try: datetime | None = None
    series: dict[str, SeriesProgress] | None = None
    """Selected series by SeriesInstanceUID; None until the series were listed."""
    reason: str | None = None

    @property
    def expected(self) -> int | None:
        """Instances the source listed for the selected series (None if it did not say)."""
        if self.series is None:
            return None
        counts = [s.expected for s in self.series.values()]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    @property
    def retrieved(self) -> int:
        """Instances of the selected series found in incoming/ at the last count."""
        return sum(s.retrieved for s in (self.series or {}).values())


class JobProgress(_Model):
    """``state.json``: the job's state and its studies. Written by the service only."""

    version: int = 1
    state: JobState = "queued"
    reason: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    updated: datetime = Field(default_factory=utcnow)
    studies: list[StudyProgress] = Field(default_factory=list)

    def counts(self) -> tuple[int, int, int]:
        """Studies (done, failed, remaining)."""
        done = sum(1 for s in self.studies if s.state == "done")
        failed = sum(1 for s in self.studies if s.state == "failed")
        return done, failed, len(self.studies) - done - failed

    @property
    def instances(self) -> int:
        """Instances retrieved so far, over all studies."""
        return sum(s.retrieved for s in self.studies)


def check_job_id(job_id: str) -> str:
    """``job_id`` if it is usable as a job id, else JobError saying why."""
    if not JOB_ID.match(job_id):
        raise JobError(
            f"job id {job_id[:80]!r} is not usable: use 1-64 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return job_id


def new_job_id() -> str:
    """A generated job id (sorts by creation time)."""
    return f"job-{time_ordered_id()}"


def jobs_root(data: DataFolder) -> Path:
    """``retrieve/jobs/``."""
    return data.retrieve_dir / "jobs"


def _write(path: Path, model: BaseModel) -> None:
    atomic_write_text(path, model.model_dump_json(indent=2) + "\n", mode=FILE_MODE)


def _read(path: Path, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise JobError(f"{path} is not a valid {model.__name__}: {exc.errors()[0]['msg']}") from exc


def create_job(data: DataFolder, request: JobRequest) -> Path:
    """Make the job folder with ``job.json``, ``control.json`` and ``state.json`` (queued).

    The folder is built under a dot name and renamed into place, so the service never sees a
    job without its request. JobError if a job of that id exists.
    """
    check_job_id(request.id)
    final = job_dir(data, request.id)
    if final.exists():
        raise JobError(f"a retrieve job {request.id!r} exists already ({final})")
    building = final.with_name(f".new-{request.id}-{os.getpid()}")
    building.mkdir(mode=FOLDER_MODE, parents=False)
    os.chmod(building, FOLDER_MODE)
    _write(building / JOB_FILE, request)
    _write(building / CONTROL_FILE, Control())
    studies = [StudyProgress(accession=accession) for accession in request.accessions]
    _write(building / STATE_FILE, JobProgress(studies=studies))
    try:
        # rename() would replace an empty folder of that name; a job folder is never empty,
        # and a concurrent create of the same id leaves one of them in place (the other fails).
        os.rename(building, final)
    except OSError as exc:
        raise JobError(f"a retrieve job {request.id!r} exists already ({final})") from exc
    return final


def read_request(folder: Path) -> JobRequest:
    """The job's request."""
    return _read(folder / JOB_FILE, JobRequest)


def read_control(folder: Path) -> Control:
    """The operator's last word (run when the file is missing)."""
    try:
        return _read(folder / CONTROL_FILE, Control)
    except FileNotFoundError:
        return Control()


def write_control(folder: Path, action: Action) -> None:
    """Tell the service to run, pause or cancel the job."""
    _write(folder / CONTROL_FILE, Control(action=action))


def read_progress(folder: Path) -> JobProgress:
    """The job's progress as the service last wrote it."""
    return _read(folder / STATE_FILE, JobProgress)


def write_progress(folder: Path, progress: JobProgress) -> None:
    """Replace the progress file (atomically, durably)."""
    progress.updated = utcnow()
    _write(folder / STATE_FILE, progress)


def job_folders(data: DataFolder) -> Iterator[Path]:
    """The job folders, oldest request first (by creation time, then id)."""
    try:
        entries = [e for e in os.scandir(jobs_root(data)) if not e.name.startswith(".")]
    except FileNotFoundError:
        return
    found = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            created = json.loads((Path(entry.path) / JOB_FILE).read_bytes()).get("created", "")
        except (OSError, ValueError, AttributeError):
            continue
        found.append((str(created), entry.name, Path(entry.path)))
    for _, _, path in sorted(found):
        yield path


def find_job(data: DataFolder, job_id: str) -> Path:
    """The folder of job ``job_id``; JobError if there is none."""
    check_job_id(job_id)
    folder = job_dir(data, job_id)
    if not (folder / JOB_FILE).is_file():
        raise JobError(f"no retrieve job {job_id!r} in {jobs_root(data)}")
    return folder
