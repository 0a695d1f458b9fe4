"""Series that a retrieve job is fetching: the marks the retriever writes and the router reads.

A mark is ``<data_dir>/retrieve/series/<SeriesInstanceUID>.json``, written atomically by the
retriever before it asks the source for a study, one per series the source listed::

    {"job": "lab42", "source": "pacs", "study": "1.2.3", "rule": null,
     "complete": false, "expected": 120}

The contract (docs/retrieve.md, "How retrieved series reach the rules"):

- While a series has a mark with ``complete: false`` whose job folder exists, the router does
  not complete it by its quiet time: the retrieve's end decides, not a pause of the PACS.
- The retriever rewrites the mark with ``complete: true`` once the study's retrieve ended
  (every instance arrived, or the tries are used up). The router then completes the series at
  once and removes the mark when it has taken the series.
- Rules see the tag ``RetrieveJob`` (the job's id) and ``RetrieveSource``; a mark with a
  ``rule`` makes the router apply that rule alone (the job's forced rule) instead of
  evaluating every rule.
- A mark whose job folder is gone (the job was deleted) is ignored: the quiet time applies.
- The retriever removes the marks of its job that are left when the job ends (series the
  source listed that never arrived).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mercure.core.atomic import atomic_write_json
from mercure.core.datafolder import DataFolder

RETRIEVE_JOB_TAG = "RetrieveJob"
"""Tag that rules see on a retrieved series: the id of the job that fetched it."""
RETRIEVE_SOURCE_TAG = "RetrieveSource"
"""Tag that rules see on a retrieved series: the name of the source it came from."""


@dataclass(frozen=True, slots=True)
class RetrieveMark:
    """What the router needs to know about a series that a retrieve job fetches."""

    job: str
    source: str
    study: str
    rule: str | None = None
    complete: bool = False
    expected: int | None = None
    """Instances the source listed for the series (C-FIND / QIDO), if it said."""


def marks_dir(data: DataFolder) -> Path:
    """The folder of the marks."""
    return data.retrieve_dir / "series"


def job_dir(data: DataFolder, job: str) -> Path:
    """The folder of one retrieve job."""
    return data.retrieve_dir / "jobs" / job


def mark_path(data: DataFolder, series_uid: str) -> Path:
    """Where the mark of a series lives."""
    return marks_dir(data) / f"{series_uid}.json"


def write_mark(data: DataFolder, series_uid: str, mark: RetrieveMark) -> None:
    """Write (or replace) the mark of a series, atomically and durably."""
    atomic_write_json(mark_path(data, series_uid), asdict(mark))


def read_mark(data: DataFolder, series_uid: str) -> RetrieveMark | None:
    """The mark of a series, or None if it has none or it is unreadable."""
    try:
        raw = json.loads(mark_path(data, series_uid).read_bytes())
    except (OSError, ValueError):
        return None
    return _from_json(raw)


def active_mark(data: DataFolder, series_uid: str) -> RetrieveMark | None:
    """The mark of a series if its job still exists (a deleted job's marks count as none)."""
    mark = read_mark(data, series_uid)
    if mark is None or not job_dir(data, mark.job).is_dir():
        return None
    return mark


def remove_mark(data: DataFolder, series_uid: str) -> None:
    """Remove the mark of a series (no error if it has none)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(mark_path(data, series_uid))


def marks_of_job(data: DataFolder, job: str) -> Iterator[tuple[str, RetrieveMark]]:
    """``(series_uid, mark)`` of every mark of one job."""
    try:
        entries = list(os.scandir(marks_dir(data)))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue
        series_uid = entry.name[: -len(".json")]
        mark = read_mark(data, series_uid)
        if mark is not None and mark.job == job:
            yield series_uid, mark


def _from_json(raw: object) -> RetrieveMark | None:
    if not isinstance(raw, dict):
        return None
    job, source, study = raw.get("job"), raw.get("source"), raw.get("study")
    if not (isinstance(job, str) and isinstance(source, str) and isinstance(study, str)):
        return None
    rule = raw.get("rule")
    expected = raw.get("expected")
    return RetrieveMark(
        job=job,
        source=source,
        study=study,
        rule=rule if isinstance(rule, str) and rule else None,
        complete=raw.get("complete") is True,
        expected=expected if isinstance(expected, int) and not isinstance(expected, bool) else None,
    )
