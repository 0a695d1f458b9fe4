"""Search: find the series and studies the router received, and one series' whole history.

``/search`` asks the bookkeeper for series (or studies: the series grouped by study) by
patient name (prefix in any case, or DICOM's ``*``/``?``), patient ID, accession, study date
range, modality, sender AE title, rule, target, task state and time of reception; with no
criteria it lists the latest. ``/search/series/{uid}`` shows one series: its tags, the tasks
made of it (its own and its study's) with each target's state, and every event from its
reception to each delivery. Both are read-only pages for every signed-in user; patient data
is shown only to them (the bookkeeper's API key never reaches the browser).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import NoMatchFound

from mercure.core.datafolder import Stage
from mercure.webgui.auth import ViewerSession
from mercure.webgui.bookkeeper import BookkeeperError
from mercure.webgui.context import web_context
from mercure.webgui.rendering import render, url

router = APIRouter()

PAGE_SIZE = 50
MAX_OFFSET = 100_000
MAX_TEXT = 200
STATES = (*(stage.value for stage in Stage), "cleaned", "deleted")
"""A task's states: the stage folder it is in, or what became of it after."""
WINDOWS = {"1d": ("last 24 hours", timedelta(days=1)), "7d": ("last 7 days", timedelta(days=7))}
WINDOWS["30d"] = ("last 30 days", timedelta(days=30))
TEXT_FIELDS = ("patient_name", "patient_id", "accession", "modality", "sender_aet")
CHOICE_FIELDS = ("rule", "target", "state")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class Criteria:
    """What the search form asked for, checked; ``problems`` say what was wrong."""

    kind: str = "series"
    text: dict[str, str] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    date_from: str = ""
    date_to: str = ""
    received: str = ""
    study_uid: str = ""
    offset: int = 0
    problems: list[str] = field(default_factory=list)

    def api_filters(self, now: datetime) -> dict[str, Any]:
        """The bookkeeper's query parameters for these criteria."""
        filters: dict[str, Any] = {**self.text, **self.choices}
        if self.date_from or self.date_to:
            first = self.date_from.replace("-", "")
            last = self.date_to.replace("-", "")
            filters["study_date"] = first if first == last else f"{first}-{last}"
        if self.received:
            filters["since"] = now - WINDOWS[self.received][1]
        if self.study_uid:
            filters["study_uid"] = self.study_uid
        return filters

    def query(self, **changes: Any) -> str:
        """The query string of these criteria with ``changes`` (e.g. another offset)."""
        values: dict[str, Any] = {
            "kind": self.kind,
            **self.text,
            **self.choices,
            "date_from": self.date_from,
            "date_to": self.date_to,
            "received": self.received,
            "study_uid": self.study_uid,
            "offset": self.offset,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 0)})

    @property
    def empty(self) -> bool:
        """No criterion given: the page lists the latest."""
        return not (self.text or self.choices or self.date_from or self.date_to or self.study_uid)


def read_criteria(request: Request) -> Criteria:
    """The search form's values from the query string, bounded and checked."""
    params = request.query_params
    criteria = Criteria()
    if params.get("kind") == "studies":
        criteria.kind = "studies"
    for name in TEXT_FIELDS:
        value = params.get(name, "").strip()
        if len(value) > MAX_TEXT:
            criteria.problems.append(f"{_label(name)}: at most {MAX_TEXT} characters")
        elif value:
            criteria.text[name] = value
    for name in CHOICE_FIELDS:
        value = params.get(name, "").strip()
        if len(value) > MAX_TEXT:
            criteria.problems.append(f"{_label(name)}: at most {MAX_TEXT} characters")
        elif value:
            criteria.choices[name] = value
    for name in ("date_from", "date_to"):
        value = params.get(name, "").strip()
        if value and not _is_day(value):
            criteria.problems.append(f"{_label(name)}: {value[:40]!r} is not a date (YYYY-MM-DD)")
        else:
            setattr(criteria, name, value)
    if criteria.date_from and criteria.date_to and criteria.date_from > criteria.date_to:
        criteria.problems.append("study date: the first day is after the last")
    received = params.get("received", "")
    criteria.received = received if received in WINDOWS else ""
    study_uid = params.get("study_uid", "").strip()
    if len(study_uid) > MAX_TEXT:
        criteria.problems.append(f"study UID: at most {MAX_TEXT} characters")
    else:
        criteria.study_uid = study_uid
    try:
        criteria.offset = min(max(int(params.get("offset") or 0), 0), MAX_OFFSET)
    except ValueError:
        criteria.problems.append("offset: not a number")
    return criteria


def _is_day(value: str) -> bool:
    if not _ISO_DAY.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _label(name: str) -> str:
    return {
        "patient_name": "patient name",
        "patient_id": "patient ID",
        "sender_aet": "sender AE title",
        "date_from": "study date from",
        "date_to": "study date to",
    }.get(name, name)


@router.get("/search", name="search")
async def search(request: Request, _session: ViewerSession) -> Response:
    """The search form and a page of matching series or studies."""
    web = web_context(request)
    criteria = read_criteria(request)
    results: Any = None
    if not criteria.problems:
        filters = criteria.api_filters(web.wall_clock())
        try:
            if criteria.kind == "studies":
                results = await web.bookkeeper.search_studies(
                    **filters, limit=PAGE_SIZE, offset=criteria.offset
                )
            else:
                results = await web.bookkeeper.search_series(
                    **filters, limit=PAGE_SIZE, offset=criteria.offset
                )
        except BookkeeperError as exc:
            if exc.status == 422:
                criteria.problems.append(f"the bookkeeper refused the search: {exc.detail}")
            else:
                request.state.bookkeeper_problem = str(exc)
    config = web.config
    context = {
        "criteria": criteria,
        "results": results,
        "rules": sorted(config.rules),
        "targets": sorted(config.targets),
        "states": STATES,
        "windows": {key: label for key, (label, _) in WINDOWS.items()},
        "page_size": PAGE_SIZE,
        "previous_offset": max(criteria.offset - PAGE_SIZE, 0) if criteria.offset else None,
    }
    status = 422 if criteria.problems else 200
    return render(request, "search.html", context, status_code=status)


@router.get("/search/series/{series_uid:path}", name="series")
async def series_page(request: Request, series_uid: str, _session: ViewerSession) -> Response:
    """One series: its tags, its tasks with their targets, and its history."""
    web = web_context(request)
    history = None
    status = 200
    try:
        history = await web.bookkeeper.series_history(series_uid)
        if history is None:
            status = 404
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
        status = 503
    tasks = {}
    if history is not None:
        tasks = {task.task_id: _task_href(request, task.task_id) for task in history.tasks}
    context = {"series_uid": series_uid, "history": history, "task_links": tasks}
    return render(request, "search/series.html", context, status_code=status)


def _task_href(request: Request, task_id: str) -> str | None:
    try:
        return url(request, "task", task_id=task_id)
    except NoMatchFound:
        return None
