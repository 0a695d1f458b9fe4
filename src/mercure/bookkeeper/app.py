"""The bookkeeper's HTTP API (FastAPI): the batch write endpoint, the read API, health, metrics.

Access: every route except ``/health`` needs the bookkeeper's API key as a bearer token
(``Authorization: Bearer <key>``), checked with the request's size limit by
:mod:`mercure.bookkeeper.guard` before any body is read; ``/metrics`` is served without it
only when an administrator opens it. Database routes are plain ``def`` functions: FastAPI
runs them in its thread pool, so a slow query never stalls the event loop.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from sqlalchemy.engine import Engine

from mercure import __version__
from mercure.bookkeeper import api_models as m
from mercure.bookkeeper import queries
from mercure.bookkeeper.database import DatabaseError, current_revision
from mercure.bookkeeper.guard import DEFAULT_MAX_BODY, Access, RequestGuard
from mercure.bookkeeper.ingest import ingest
from mercure.bookkeeper.metrics import Metrics
from mercure.bookkeeper.users import UserStore
from mercure.bookkeeper.users_api import add_user_routes
from mercure.core.clock import utcnow

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_PAGE = 1000

_bearer = HTTPBearer(auto_error=False, description="The bookkeeper's API key.")


def _require_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    # The guard refused a wrong key already; checking again here costs nothing and keeps a
    # route safe if it is ever served without the guard. It also puts the bearer scheme
    # into the OpenAPI schema.
    access: Access = request.app.state.access
    if access.is_open(request.url.path):
        return
    if not access.accepts(credentials.credentials if credentials else ""):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})


Authorized = Depends(_require_access)
MAX_OFFSET = 10**12
"""Beyond any table: a larger offset is refused (422) instead of overflowing the database's
integer (which was a 500)."""
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Times in queries lie between these, so that no range arithmetic leaves the calendar."""


def _utc(value: datetime) -> datetime:
    """A query time in UTC (naive means UTC), within :data:`EARLIEST` and :data:`LATEST`."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the calendar once converted to UTC") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return utc


Time = Annotated[datetime, AfterValidator(_utc)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
Offset = Annotated[
    int,
    Query(ge=0, le=MAX_OFFSET, description="Items to skip (next_offset of the last page)."),
]
Since = Annotated[Time | None, Query(description="From this time on (ISO 8601; UTC if naive).")]
Until = Annotated[Time | None, Query(description="Before this time (ISO 8601; UTC if naive).")]


_DATE_RANGE = re.compile(r"(?P<start>\d{8})?(?P<dash>-)?(?P<end>\d{8})?")


def _date_range(value: str | None) -> tuple[str, str] | None:
    """DICOM's date or date range: ``YYYYMMDD``, ``A-B``, ``A-`` or ``-B``."""
    if not value:
        return None
    match = _DATE_RANGE.fullmatch(value.strip())
    if match is None or not (match["start"] or match["end"]):
        raise ValueError("a date YYYYMMDD or a range YYYYMMDD-YYYYMMDD, A- or -B")
    for part in (match["start"], match["end"]):
        if part:
            try:
                datetime.strptime(part, "%Y%m%d")
            except ValueError:
                raise ValueError(f"{part} is not a day of the calendar (YYYYMMDD)") from None
    if match["dash"] is None:
        return match["start"], match["start"]
    return match["start"] or "", match["end"] or "99991231"


def _checked_date_range(value: str | None) -> str | None:
    try:
        _date_range(value)
    except ValueError as exc:
        raise ValueError(f"study_date {value!r}: {exc}") from None
    return value


PatientName = Annotated[
    str | None,
    Query(
        max_length=200,
        description="The start of the patient's name in any case (`doe^j`, `Doe J`); `*` "
        "for any text and `?` for one character as in DICOM's queries (`*john*`).",
    ),
]
StudyDate = Annotated[
    str | None,
    AfterValidator(_checked_date_range),
    Query(description="`YYYYMMDD`, or a range `YYYYMMDD-YYYYMMDD` (either end open)."),
]


def _study_dates(study_date: str | None) -> tuple[str | None, str | None]:
    """The first and last StudyDate of a range (None: open)."""
    first, last = _date_range(study_date) or ("", "")
    return first or None, last or None


def create_app(
    engine: Engine,
    *,
    api_key: str | Callable[[], Sequence[str]],
    max_body: int = DEFAULT_MAX_BODY,
    metrics_open: bool = False,
    queue_depths: Callable[[], Mapping[str, int]] | None = None,
    data_folder: Path | None = None,
    metrics: Metrics | None = None,
    users: UserStore | None = None,
) -> FastAPI:
    """The bookkeeper application on ``engine`` (whose schema must be migrated already).

    ``api_key`` is the key, or a function returning the keys accepted at the moment.
    """
    app = FastAPI(
        # FastAPI's /docs and /redoc pages load their scripts from a CDN; a hospital network
        # should not, so only the schema itself is served (/openapi.json).
        docs_url=None,
        redoc_url=None,
        title="mercure-router bookkeeper",
        version=__version__,
        description="Events of every mercure-router service, and what they tell about series "
        "and tasks. Write with POST /api/v1/events; everything else reads.",
    )
    keys = (lambda: (api_key,)) if isinstance(api_key, str) else api_key
    access = Access(keys, max_body=max_body, metrics_open=metrics_open)
    app.state.access = access
    app.add_middleware(RequestGuard, access=access)
    app.state.metrics = metrics or Metrics()
    counters: Metrics = app.state.metrics
    depths = queue_depths or dict

    def task_states() -> Mapping[str, int] | None:
        try:
            return queries.task_states(engine)
        except sa.exc.DBAPIError:
            return None

    counters.watch(task_states=task_states, queue_depths=depths, data_folder=data_folder)

    def received(
        series_uids: set[str], study_uids: set[str]
    ) -> tuple[dict[str, datetime], dict[str, datetime]]:
        try:
            return queries.last_received(engine, series_uids, study_uids)
        except sa.exc.DBAPIError as exc:
            # The batch is stored; only its latency measurements are lost.
            log.warning("no stage latencies for a batch: %s", exc.orig)
            return {}, {}

    @app.exception_handler(DatabaseError)
    def _database_unavailable(_request: Request, exc: DatabaseError) -> JSONResponse:
        log.error("bookkeeper database error: %s", exc)
        return JSONResponse({"detail": "the database is unavailable; retry later"}, 503)

    @app.post(
        f"{API}/events",
        response_model=m.IngestResponse,
        tags=["write"],
        dependencies=[Authorized],
        summary="Store a batch of events (idempotent by event id)",
    )
    def post_events(batch: m.EventBatch) -> m.IngestResponse:
        started = time.perf_counter()
        try:
            result = ingest(engine, batch.events)
        except DatabaseError:
            counters.record_failure()
            raise
        counters.record_batch(
            result.new_events, result.duplicates, time.perf_counter() - started, received
        )
        return m.IngestResponse(stored=result.stored, duplicates=result.duplicates)

    @app.get(f"{API}/events", response_model=m.EventPage, tags=["read"], dependencies=[Authorized])
    def get_events(
        limit: Limit = 50,
        offset: Offset = 0,
        kind: str | None = None,
        kind_prefix: Annotated[str | None, Query(description="e.g. `dispatch.`")] = None,
        service: str | None = None,
        severity: Annotated[
            Literal["debug", "info", "warning", "error", "critical"] | None,
            Query(description="This severity or worse."),
        ] = None,
        task_id: str | None = None,
        series_uid: str | None = None,
        study_uid: str | None = None,
        since: Since = None,
        until: Until = None,
    ) -> Any:
        """Search events, newest first."""
        filters = queries.EventFilters(
            kind=kind,
            kind_prefix=kind_prefix,
            service=service,
            min_severity=severity,
            task_id=task_id,
            series_uid=series_uid,
            study_uid=study_uid,
            since=since,
            until=until,
        )
        return asdict(queries.search_events(engine, filters, queries.Page(limit, offset)))

    @app.get(f"{API}/tasks", response_model=m.TaskPage, tags=["read"], dependencies=[Authorized])
    def get_tasks(
        limit: Limit = 50,
        offset: Offset = 0,
        accession: str | None = None,
        patient_id: str | None = None,
        series_uid: str | None = None,
        study_uid: str | None = None,
        rule: Annotated[str | None, Query(description="A rule that fired for the task.")] = None,
        target: str | None = None,
        state: Annotated[list[str] | None, Query(description="One or more states.")] = None,
        since: Annotated[Time | None, Query(description="Created at or after.")] = None,
        until: Annotated[Time | None, Query(description="Created before.")] = None,
    ) -> Any:
        """Search tasks (exact matches), newest first."""
        filters = queries.Filters(
            accession=accession,
            patient_id=patient_id,
            series_uid=series_uid,
            study_uid=study_uid,
            rule=rule,
            target=target,
            states=state or (),
            since=since,
            until=until,
        )
        return asdict(queries.search_tasks(engine, filters, queries.Page(limit, offset)))

    @app.get(
        f"{API}/tasks/{{task_id}}",
        response_model=m.TaskDetail,
        tags=["read"],
        dependencies=[Authorized],
    )
    def get_task(task_id: str) -> Any:
        """A task with its targets, rules, version list and processing runs."""
        detail = queries.task_detail(engine, task_id)
        if detail is None:
            raise HTTPException(404, "unknown task")
        task = {**detail.task, "targets": detail.targets, "rules": detail.rules}
        return {"task": task, "versions": detail.versions, "processing": detail.processing}

    @app.get(
        f"{API}/tasks/{{task_id}}/timeline",
        response_model=list[m.EventRecord],
        tags=["read"],
        dependencies=[Authorized],
    )
    def get_timeline(task_id: str) -> Any:
        """Everything that happened to a task, oldest first, from the reception of its series."""
        events = queries.timeline(engine, task_id)
        if events is None:
            raise HTTPException(404, "unknown task")
        return events

    @app.get(
        f"{API}/tasks/{{task_id}}/versions",
        response_model=list[m.TaskVersion],
        tags=["read"],
        dependencies=[Authorized],
    )
    def get_versions(task_id: str) -> Any:
        """Every recorded version of the task's task.json, oldest first."""
        return queries.task_versions(engine, task_id)

    @app.get(f"{API}/series", response_model=m.SeriesPage, tags=["read"], dependencies=[Authorized])
    def get_series(
        limit: Limit = 50,
        offset: Offset = 0,
        accession: str | None = None,
        patient_id: str | None = None,
        series_uid: str | None = None,
        study_uid: str | None = None,
        modality: str | None = None,
        sender_aet: str | None = None,
        patient_name: PatientName = None,
        study_date: StudyDate = None,
        rule: Annotated[str | None, Query(description="A rule fired for one of its tasks.")] = None,
        target: Annotated[str | None, Query(description="A target of one of its tasks.")] = None,
        state: Annotated[list[str] | None, Query(description="State of one of its tasks.")] = None,
        since: Annotated[Time | None, Query(description="Last received at or after.")] = None,
        until: Annotated[Time | None, Query(description="First received before.")] = None,
    ) -> Any:
        """Search received series, most recent first (exact matches but for patient_name)."""
        filters = queries.Filters(
            accession=accession,
            patient_id=patient_id,
            patient_name=patient_name,
            series_uid=series_uid,
            study_uid=study_uid,
            modality=modality,
            sender_aet=sender_aet,
            rule=rule,
            target=target,
            states=state or (),
            since=since,
            until=until,
            study_dates=_study_dates(study_date),
        )
        return asdict(queries.search_series(engine, filters, queries.Page(limit, offset)))

    @app.get(f"{API}/studies", response_model=m.StudyPage, tags=["read"], dependencies=[Authorized])
    def get_studies(
        limit: Limit = 50,
        offset: Offset = 0,
        accession: str | None = None,
        patient_id: str | None = None,
        study_uid: str | None = None,
        modality: Annotated[str | None, Query(description="Of one of its series.")] = None,
        sender_aet: Annotated[str | None, Query(description="Of one of its series.")] = None,
        patient_name: PatientName = None,
        study_date: StudyDate = None,
        rule: Annotated[str | None, Query(description="A rule fired for one of its tasks.")] = None,
        target: Annotated[str | None, Query(description="A target of one of its tasks.")] = None,
        state: Annotated[list[str] | None, Query(description="State of one of its tasks.")] = None,
        since: Annotated[Time | None, Query(description="A series received at or after.")] = None,
        until: Annotated[Time | None, Query(description="A series received before.")] = None,
    ) -> Any:
        """Search studies (the received series grouped by study), most recent first."""
        filters = queries.Filters(
            accession=accession,
            patient_id=patient_id,
            patient_name=patient_name,
            study_uid=study_uid,
            modality=modality,
            sender_aet=sender_aet,
            rule=rule,
            target=target,
            states=state or (),
            since=since,
            until=until,
            study_dates=_study_dates(study_date),
        )
        return asdict(queries.search_studies(engine, filters, queries.Page(limit, offset)))

    @app.get(
        f"{API}/series/{{series_uid}}/history",
        response_model=m.SeriesHistory,
        tags=["read"],
        dependencies=[Authorized],
    )
    def get_series_history(series_uid: str) -> Any:
        """A series, the tasks made of it and of its study, and their events oldest first."""
        history = queries.series_history(engine, series_uid)
        if history is None:
            raise HTTPException(404, "unknown series")
        return asdict(history)

    @app.get(
        f"{API}/statistics", response_model=m.Statistics, tags=["read"], dependencies=[Authorized]
    )
    def get_statistics(
        bucket: Literal["hour", "day"] = "hour",
        since: Annotated[
            Time | None, Query(description="Default: 24 hours (hour) or 30 days (day) ago.")
        ] = None,
        until: Annotated[Time | None, Query(description="Default: now.")] = None,
    ) -> Any:
        """Throughput per hour or day (UTC buckets, empty ones included)."""
        end = until or utcnow()
        start = since or end - (timedelta(days=1) if bucket == "hour" else timedelta(days=30))
        try:
            buckets = queries.statistics(engine, bucket, start, end)
        except ValueError as exc:
            raise HTTPException(422, f"since/until: {exc}") from None
        return {"bucket": bucket, "since": start, "until": end, "buckets": buckets}

    @app.get(
        f"{API}/targets/stats",
        response_model=m.TargetStatisticsPage,
        tags=["read"],
        dependencies=[Authorized],
    )
    def get_target_statistics(
        since: Annotated[Time | None, Query(description="Default: 24 hours ago.")] = None,
        until: Annotated[Time | None, Query(description="Default: now.")] = None,
    ) -> Any:
        """Delivery per target (delivered, retried, failed, mean time, last error)."""
        end = until or utcnow()
        start = since or end - timedelta(days=1)
        if start >= end:
            raise HTTPException(422, "since must be before until")
        return queries.target_statistics(engine, start, end)

    @app.get(
        f"{API}/rules/hits", response_model=m.RuleHits, tags=["read"], dependencies=[Authorized]
    )
    def get_rule_hits(
        since: Annotated[Time | None, Query(description="Default: 24 hours ago.")] = None,
        until: Annotated[Time | None, Query(description="Default: now.")] = None,
    ) -> Any:
        """How many tasks (and series) each rule fired for, by task creation time."""
        end = until or utcnow()
        start = since or end - timedelta(days=1)
        return {"since": start, "until": end, "rules": queries.rule_hits(engine, start, end)}

    @app.get(f"{API}/queues", response_model=m.Queues, tags=["read"], dependencies=[Authorized])
    def get_queues() -> Any:
        """Tasks by state (database) and entries by stage (data folder)."""
        return {"tasks_by_state": queries.task_states(engine), "data_folder": dict(depths())}

    @app.get(
        f"{API}/retrieve/jobs",
        response_model=m.RetrieveJobs,
        tags=["read"],
        dependencies=[Authorized],
    )
    def get_retrieve_jobs(
        finished_days: Annotated[
            float, Query(ge=0, le=365, description="Also jobs finished this many days ago.")
        ] = 7,
        limit: Limit = 100,
    ) -> Any:
        """Each retrieve job's latest progress: jobs under way, and those finished lately."""
        items = queries.retrieve_jobs(
            engine, utcnow(), finished_within=timedelta(days=finished_days), limit=limit
        )
        return {"items": items}

    @app.get(f"{API}/audit", response_model=m.AuditPage, tags=["read"], dependencies=[Authorized])
    def get_audit(
        limit: Limit = 50,
        offset: Offset = 0,
        user: str | None = None,
        action: str | None = None,
        since: Since = None,
        until: Until = None,
    ) -> Any:
        """Web audit entries, newest first."""
        page = queries.search_audit(
            engine,
            queries.Page(limit, offset),
            user=user,
            action=action,
            since=since,
            until=until,
        )
        return asdict(page)

    add_user_routes(app, users or UserStore(engine), Authorized)

    @app.get("/health", response_model=m.Health, tags=["operations"])
    def get_health() -> Any:
        """200 when the database answers, 503 otherwise."""
        try:
            revision = current_revision(engine)
        except sa.exc.DBAPIError:
            return JSONResponse(
                {"status": "unavailable", "database": engine.dialect.name, "schema_revision": None},
                503,
            )
        return {"status": "ok", "database": engine.dialect.name, "schema_revision": revision}

    @app.get(
        "/metrics", response_class=PlainTextResponse, tags=["operations"], dependencies=[Authorized]
    )
    def get_metrics(request: Request) -> Response:
        """Counters, stage latencies and gauges in the Prometheus (or OpenMetrics) format."""
        body, content_type = counters.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return app


def set_api_key(app: FastAPI, api_key: str | Callable[[], Sequence[str]]) -> None:
    """Change the key the API demands (after a configuration reload)."""
    access: Access = app.state.access
    access.keys = (lambda: (api_key,)) if isinstance(api_key, str) else api_key
