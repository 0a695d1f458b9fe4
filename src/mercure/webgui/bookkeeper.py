"""The web interface's client of the bookkeeper's HTTP API.

Every call carries the bookkeeper's API key (:mod:`mercure.core.apikey`) and has short
timeouts: a page must say "the bookkeeper is unreachable" quickly, not hang. Errors::

    BookkeeperError                  anything that kept a call from its answer
    ├── BookkeeperUnavailable        not reachable, too slow, or 5xx (transient: retry later)
    └── BookkeeperRejected           it answered 4xx: ``status`` and the ``detail`` it gave

Page authors add a method per endpoint they use, returning a pydantic model of the answer
(the models here describe what crosses the process boundary; the bookkeeper's own models are
not imported: services never import each other).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, RootModel, ValidationError

from mercure.core.errors import MercureError, PermanentError, TransientError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 8.0
API = "/api/v1"


_M = TypeVar("_M", bound=BaseModel)


class BookkeeperError(MercureError):
    """A bookkeeper call did not give its answer."""

    status: int | None = None
    detail: str = ""


class BookkeeperUnavailable(BookkeeperError, TransientError):
    """The bookkeeper cannot be reached, answered too slowly, or failed (5xx)."""


class BookkeeperRejected(BookkeeperError, PermanentError):
    """The bookkeeper answered with a 4xx status; ``detail`` says why."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"the bookkeeper refused the request ({status}): {detail}")


UserRole = Literal["viewer", "operator", "admin"]


class UserRecord(BaseModel):
    """A user as the bookkeeper keeps it (never with its password hash)."""

    name: str
    role: UserRole
    disabled: bool = False
    session_epoch: int = Field(
        0, description="Increases whenever the user's sessions must end (password, role ...)."
    )
    created: datetime | None = None
    updated: datetime | None = None
    last_login: datetime | None = None
    password_changed: datetime | None = None
    must_change_password: bool = False


class StatisticsBucket(BaseModel):
    """Counts of one hour or day (UTC) from ``GET /api/v1/statistics``."""

    start: datetime
    series_received: int = 0
    instances_received: int = 0
    instances_dispatched: int = 0
    tasks_created: int = 0
    processed: int = 0
    dispatched: int = 0
    dispatch_failures: int = 0
    tasks_completed: int = 0
    tasks_failed: int = 0
    tasks_discarded: int = 0
    tasks_cleaned: int = 0
    errors: int = 0


class Statistics(BaseModel):
    """Throughput per hour or day."""

    bucket: str
    since: datetime
    until: datetime
    buckets: list[StatisticsBucket]


class EventRecord(BaseModel):
    """A stored event from ``GET /api/v1/events``."""

    id: str
    time: datetime
    service: str
    instance: str = ""
    kind: str
    severity: str
    task_id: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class EventPage(BaseModel):
    """A page of events, newest first."""

    items: list[EventRecord]
    next_offset: int | None = None


class BookkeeperClient:
    """Calls the bookkeeper at ``base_url`` with the key ``api_key()`` returns at each call."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport
            or httpx.AsyncHTTPTransport(
                # Without TCP_NODELAY a request body waits for the delayed ACK of its headers.
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            ),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """One call to ``/api/v1/<path>``; the response of a 2xx answer, else an error."""
        try:
            key = self.api_key()
        except MercureError as exc:
            raise BookkeeperUnavailable(f"no bookkeeper API key: {exc}") from None
        url = f"{API}/{path.lstrip('/')}"
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._client.request(
                method,
                url,
                params=clean,
                json=json,
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.TimeoutException:
            raise BookkeeperUnavailable(
                f"the bookkeeper at {self.base_url} did not answer in time"
            ) from None
        except httpx.TransportError as exc:
            raise BookkeeperUnavailable(
                f"the bookkeeper at {self.base_url} cannot be reached ({type(exc).__name__})"
            ) from None
        if response.status_code >= 500:
            raise BookkeeperUnavailable(
                f"the bookkeeper at {self.base_url} failed ({response.status_code}): "
                f"{_detail(response)}"
            )
        if response.status_code >= 400:
            if response.status_code == 401 and path.rstrip("/") != "users/verify":
                log.error("the bookkeeper refused the webgui's API key (%s)", _detail(response))
            raise BookkeeperRejected(response.status_code, _detail(response))
        return response

    async def _get_model(self, model: type[_M], path: str, **params: Any) -> _M:
        response = await self.request("GET", path, params=params)
        return _parse(model, response)

    # --- users ------------------------------------------------------------------------
    async def verify_user(self, name: str, password: str, remote_address: str) -> UserRecord | None:
        """The user if ``password`` is right and the user may sign in; None otherwise."""
        body = {"name": name, "password": password, "remote_address": remote_address}
        try:
            response = await self.request("POST", "users/verify", json=body)
        except BookkeeperRejected as exc:
            if exc.status in (401, 403, 404, 422):
                return None
            raise
        return _parse(UserRecord, response)

    async def list_users(self) -> list[UserRecord]:
        """Every user."""
        response = await self.request("GET", "users")
        return _parse(_UserList, response).users

    async def get_user(self, name: str) -> UserRecord | None:
        """One user, or None if there is no such user."""
        try:
            return await self._get_model(UserRecord, f"users/{_segment(name)}")
        except BookkeeperRejected as exc:
            if exc.status == 404:
                return None
            raise

    async def create_user(
        self, name: str, role: UserRole, password: str, *, actor: str, remote_address: str
    ) -> None:
        """Add a user (409: the name is taken; 422: e.g. a password too weak)."""
        body = {
            "name": name,
            "role": role,
            "password": password,
            "actor": actor,
            "remote_address": remote_address,
        }
        await self.request("POST", "users", json=body)

    async def update_user(
        self,
        name: str,
        *,
        actor: str,
        remote_address: str,
        role: UserRole | None = None,
        disabled: bool | None = None,
    ) -> None:
        """Change a user's role or disable / enable it."""
        body: dict[str, Any] = {"actor": actor, "remote_address": remote_address}
        if role is not None:
            body["role"] = role
        if disabled is not None:
            body["disabled"] = disabled
        await self.request("PATCH", f"users/{_segment(name)}", json=body)

    async def set_password(
        self,
        name: str,
        password: str,
        *,
        actor: str,
        remote_address: str,
        must_change_password: bool = False,
    ) -> None:
        """Give a user a new password (ends the user's sessions); a temporary one with
        ``must_change_password``."""
        body = {
            "password": password,
            "actor": actor,
            "remote_address": remote_address,
            "must_change_password": must_change_password,
        }
        await self.request("PUT", f"users/{_segment(name)}/password", json=body)

    async def delete_user(self, name: str, *, actor: str, remote_address: str) -> None:
        """Remove a user."""
        params = {"actor": actor, "remote_address": remote_address}
        await self.request("DELETE", f"users/{_segment(name)}", params=params)

    # --- monitoring -------------------------------------------------------------------
    async def statistics(
        self, bucket: Literal["hour", "day"], since: datetime, until: datetime | None = None
    ) -> Statistics:
        """Throughput per UTC hour or day from ``since`` (every bucket, empty ones too)."""
        return await self._get_model(
            Statistics,
            "statistics",
            bucket=bucket,
            since=since.isoformat(),
            until=until.isoformat() if until else None,
        )

    async def events(self, **filters: Any) -> EventPage:
        """A page of events, newest first; filters as the API names them (``severity``,
        ``kind_prefix``, ``since`` ..., ``limit``, ``offset``)."""
        params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items()}
        return await self._get_model(EventPage, "events", **params)

    # --- search page ------------------------------------------------------------------
    async def search_series(self, **filters: Any) -> SeriesPage:
        """A page of series; filters as the API names them (``patient_name``, ``study_date``
        as ``YYYYMMDD-YYYYMMDD`` ..., ``limit``, ``offset``)."""
        return await self._get_model(SeriesPage, "series", **_query(filters))

    async def search_studies(self, **filters: Any) -> StudyPage:
        """A page of studies; the same filters as :meth:`search_series`."""
        return await self._get_model(StudyPage, "studies", **_query(filters))

    async def series_history(self, series_uid: str) -> SeriesHistory | None:
        """A series' tasks and events, or None if the bookkeeper does not know the series."""
        try:
            return await self._get_model(SeriesHistory, f"series/{_segment(series_uid)}/history")
        except BookkeeperRejected as exc:
            if exc.status == 404:
                return None
            raise

    # Queue and task pages
    async def task_detail(self, task_id: str) -> TaskDetail | None:
        """A task with its targets, rules, versions and processing runs; None if unknown."""
        try:
            return await self._get_model(TaskDetail, f"tasks/{_segment(task_id)}")
        except BookkeeperRejected as exc:
            if exc.status == 404:
                return None
            raise

    async def task_timeline(self, task_id: str) -> list[EventRecord]:
        """Everything that happened to a task, oldest first ([] if the task is unknown)."""
        try:
            response = await self.request("GET", f"tasks/{_segment(task_id)}/timeline")
        except BookkeeperRejected as exc:
            if exc.status == 404:
                return []
            raise
        return _parse(_Timeline, response).root

    async def task_versions(self, task_id: str) -> list[TaskVersion]:
        """Every recorded version of a task's task.json, oldest first."""
        response = await self.request("GET", f"tasks/{_segment(task_id)}/versions")
        return _parse(_Versions, response).root

    async def tasks(self, **filters: Any) -> TaskPage:
        """A page of tasks, newest first; filters as the API names them (``accession``,
        ``patient_id``, ``rule``, ``target``, ``state``, ``limit`` ...)."""
        return await self._get_model(TaskPage, "tasks", **filters)

    # Logs, audit and users pages
    async def audit(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> AuditPage:
        """A page of audit entries, newest first (``user`` and ``action`` match exactly;
        ``since`` inclusive, ``until`` exclusive)."""
        return await self._get_model(
            AuditPage,
            "audit",
            user=user or None,
            action=action or None,
            since=since.isoformat() if since else None,
            until=until.isoformat() if until else None,
            limit=limit,
            offset=offset,
        )

    # Targets page
    async def target_statistics(
        self, since: datetime, until: datetime | None = None
    ) -> TargetStatisticsPage:
        """Delivery per target from ``since`` (delivered, retried, failed, times, last error)."""
        return await self._get_model(
            TargetStatisticsPage,
            "targets/stats",
            since=since.isoformat(),
            until=until.isoformat() if until else None,
        )

    # Rules page
    async def rule_hits(self, since: datetime | None = None) -> RuleHits:
        """How many tasks each rule fired for since ``since`` (default: the last 24 hours)."""
        return await self._get_model(
            RuleHits, "rules/hits", since=since.isoformat() if since else None
        )

    async def retrieve_jobs(self) -> list[RetrieveJobRecord]:
        """Each retrieve job's latest progress: under way, or finished in the last 7 days."""
        return (await self._get_model(RetrieveJobs, "retrieve/jobs")).items


def _query(filters: dict[str, Any]) -> dict[str, Any]:
    """Query parameters: times in ISO 8601, empty values left out."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in filters.items()
        if value not in (None, "", [])
    }


class _UserList(BaseModel):
    users: list[UserRecord]


def _segment(name: str) -> str:
    """A user name as one URL path segment."""
    return quote(name, safe="")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:200]
    return detail if isinstance(detail, str) else str(detail)[:500]


def _parse(model: type[_M], response: httpx.Response) -> _M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise BookkeeperUnavailable(
            f"the bookkeeper's answer to {response.request.url.path} is not understood: "
            f"{exc.error_count()} errors (is it another version?)"
        ) from None


# Logs, audit and users pages
class AuditRecord(BaseModel):
    """One audit entry from ``GET /api/v1/audit``: who did what to what, from where."""

    event_id: str
    time: datetime
    user: str
    action: str
    object: str | None = None
    remote_address: str | None = None
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class AuditPage(BaseModel):
    """A page of audit entries, newest first."""

    items: list[AuditRecord]
    next_offset: int | None = None


# --- Queue and task pages ----------------------------------------------------------------
class TaskTarget(BaseModel):
    """Delivery state of one target of a task, as the bookkeeper recorded it."""

    target: str
    state: str
    state_time: datetime
    reason: str | None = None


class TaskRecord(BaseModel):
    """A task as the bookkeeper knows it (``state``: its stage, ``cleaned`` or ``deleted``)."""

    task_id: str
    parent_id: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    patient_id: str | None = None
    accession: str | None = None
    action: str | None = None
    applied_rule: str | None = None
    state: str
    state_time: datetime | None = None
    fail_stage: str | None = None
    fail_reason: str | None = None
    version_count: int = 0
    created_at: datetime
    updated_at: datetime
    targets: list[TaskTarget] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)


class TaskPage(BaseModel):
    """A page of tasks, newest first."""

    items: list[TaskRecord]
    next_offset: int | None = None


class ProcessingRun(BaseModel):
    """One run of a processing module on a task."""

    event_id: str
    module: str
    started_at: datetime | None = None
    ended_at: datetime
    exit_code: int | None = None
    success: bool
    log: str = ""
    result: dict[str, Any] | list[Any] | None = None


class TaskVersionInfo(BaseModel):
    """One recorded version of task.json (without the document)."""

    event_id: str
    time: datetime
    kind: str


class TaskVersion(TaskVersionInfo):
    """One recorded version of task.json."""

    document: dict[str, Any]


class TaskDetail(BaseModel):
    """A task with its versions and processing runs."""

    task: TaskRecord
    versions: list[TaskVersionInfo] = Field(default_factory=list)
    processing: list[ProcessingRun] = Field(default_factory=list)


class _Timeline(RootModel[list[EventRecord]]):
    pass


class _Versions(RootModel[list[TaskVersion]]):
    pass


# --- search page ---------------------------------------------------------------------
class SeriesRecord(BaseModel):
    """A received series from ``GET /api/v1/series``."""

    series_uid: str
    study_uid: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    accession: str | None = None
    study_date: str | None = None
    modality: str | None = None
    series_description: str | None = None
    study_description: str | None = None
    sender_aet: str | None = None
    receiver_aet: str | None = None
    sender_address: str | None = None
    instance_count: int = 0
    first_received: datetime
    last_received: datetime
    tags: dict[str, Any] = Field(default_factory=dict)
    task_states: list[str] = Field(default_factory=list)


class SeriesPage(BaseModel):
    """A page of series, most recently received first."""

    items: list[SeriesRecord]
    next_offset: int | None = None


class StudyRecord(BaseModel):
    """A study (its received series grouped) from ``GET /api/v1/studies``."""

    study_uid: str
    patient_name: str | None = None
    patient_id: str | None = None
    accession: str | None = None
    study_date: str | None = None
    study_description: str | None = None
    modalities: list[str] = Field(default_factory=list)
    series_count: int = 0
    instance_count: int = 0
    first_received: datetime
    last_received: datetime


class StudyPage(BaseModel):
    """A page of studies, most recently received first."""

    items: list[StudyRecord]
    next_offset: int | None = None


class SeriesHistory(BaseModel):
    """A series, the tasks made of it and of its study, and their events oldest first."""

    series: SeriesRecord
    tasks: list[TaskRecord]
    events: list[EventRecord]
    events_truncated: bool = False


# --- targets page ----------------------------------------------------------------------
class TargetStatistics(BaseModel):
    """Delivery to one target over a period, from ``GET /api/v1/targets/stats``."""

    target: str
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    instances: int = 0
    bytes: int = 0
    mean_seconds: float | None = None
    max_seconds: float | None = None
    last_delivered: datetime | None = None
    last_error: str | None = None
    last_error_time: datetime | None = None


class TargetStatisticsPage(BaseModel):
    """Delivery per target over [since, until)."""

    since: datetime
    until: datetime
    truncated: bool = False
    targets: list[TargetStatistics] = Field(default_factory=list)


# --- rules page --------------------------------------------------------------------------
class RuleHit(BaseModel):
    """How often one rule fired in a period, from ``GET /api/v1/rules/hits``."""

    rule: str
    tasks: int = 0
    series: int = 0


class RuleHits(BaseModel):
    """Per rule, the tasks it fired for in ``[since, until)`` (rules without any absent)."""

    since: datetime
    until: datetime
    rules: list[RuleHit] = Field(default_factory=list)


class RetrieveJobRecord(BaseModel):
    """A retrieve job as its latest ``retrieve.job`` event tells it."""

    job: str
    time: datetime
    source: str | None = None
    state: str | None = None
    studies_total: int | None = None
    studies_done: int | None = None
    studies_failed: int | None = None
    studies_remaining: int | None = None
    instances: int | None = None
    rate: float | None = None
    offpeak: bool | None = None
    reason: str | None = None

    @property
    def studies(self) -> int:
        """Studies of the job: its total, else what it counted so far."""
        if self.studies_total is not None:
            return self.studies_total
        return (self.studies_done or 0) + (self.studies_failed or 0) + (self.studies_remaining or 0)

    @property
    def finished(self) -> bool:
        """Whether the job does nothing more."""
        return self.state in ("done", "failed", "cancelled")

    @property
    def tone(self) -> str:
        """bad when the job failed, good when it finished, muted otherwise."""
        if self.state == "failed":
            return "bad"
        return "good" if self.finished else "muted"


class RetrieveJobs(BaseModel):
    """``GET /api/v1/retrieve/jobs``."""

    items: list[RetrieveJobRecord] = Field(default_factory=list)
