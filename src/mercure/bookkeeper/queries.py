"""The read side: searches with paging, a task's timeline and details, statistics.

Every search is an indexed lookup ordered by time, newest first, and pages with
``limit``/``offset``; one row more than asked is fetched to tell whether another page exists,
so that no query ever has to count a whole table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mercure.bookkeeper import kinds, tables
from mercure.bookkeeper.projection import hour_of, name_key

Bucket = Literal["hour", "day"]
BUCKET_SECONDS = {"hour": 3600, "day": 86400}
MAX_BUCKETS = 2000


@dataclass(frozen=True)
class Page:
    """One page of a search."""

    limit: int = 50
    offset: int = 0


@dataclass
class PageOf:
    """A page of rows and where the next page starts (None on the last page)."""

    items: list[dict[str, Any]]
    next_offset: int | None


@dataclass(frozen=True)
class Filters:
    """Search criteria shared by tasks and series; empty ones are ignored, all must match."""

    accession: str | None = None
    patient_id: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    rule: str | None = None
    target: str | None = None
    states: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    modality: str | None = None
    sender_aet: str | None = None
    patient_name: str | None = None
    """Series only: a prefix of the name, any case, ``^`` or space between its parts; ``*``
    (any text) and ``?`` (one character) as in DICOM's queries."""
    study_dates: tuple[str | None, str | None] = (None, None)
    """Series only: the first and last StudyDate (``YYYYMMDD``; None: open)."""


HISTORY_EVENTS = 2000
"""At most this many events in a series' history (the oldest ones)."""


@dataclass
class SeriesHistory:
    """A series with the tasks made of it (its own and its study's) and what happened."""

    series: dict[str, Any]
    tasks: list[dict[str, Any]]
    events: list[dict[str, Any]]
    events_truncated: bool


@dataclass(frozen=True)
class EventFilters:
    """Criteria of the event search."""

    kind: str | None = None
    kind_prefix: str | None = None
    service: str | None = None
    min_severity: str | None = None
    task_id: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class TaskDetail:
    """A task with its targets, rules, versions (without documents) and processing runs."""

    task: dict[str, Any]
    targets: list[dict[str, Any]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    processing: list[dict[str, Any]] = field(default_factory=list)


def _page(connection: Connection, query: sa.Select[Any], page: Page) -> PageOf:
    rows = connection.execute(query.limit(page.limit + 1).offset(page.offset)).mappings().all()
    more = len(rows) > page.limit
    items = [dict(row) for row in rows[: page.limit]]
    return PageOf(items, page.offset + page.limit if more else None)


def _task_conditions(filters: Filters) -> list[sa.ColumnElement[bool]]:
    t = tables.tasks
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (t.c.accession, filters.accession),
        (t.c.patient_id, filters.patient_id),
        (t.c.series_uid, filters.series_uid),
        (t.c.study_uid, filters.study_uid),
    ):
        if value:
            conditions.append(column == value)
    if filters.rule:
        r = tables.task_rules
        conditions.append(sa.exists().where(r.c.task_id == t.c.task_id, r.c.rule == filters.rule))
    if filters.target:
        g = tables.task_targets
        conditions.append(
            sa.exists().where(g.c.task_id == t.c.task_id, g.c.target == filters.target)
        )
    if filters.states:
        conditions.append(t.c.state.in_(list(filters.states)))
    if filters.since:
        conditions.append(t.c.created_at >= filters.since)
    if filters.until:
        conditions.append(t.c.created_at < filters.until)
    return conditions


def search_tasks(engine: Engine, filters: Filters, page: Page) -> PageOf:
    """Tasks matching every filter, newest first, each with its targets and rules."""
    t = tables.tasks
    query = (
        sa.select(t)
        .where(*_task_conditions(filters))
        .order_by(t.c.created_at.desc(), t.c.task_id.desc())
    )
    with engine.connect() as connection:
        result = _page(connection, query, page)
        _attach_targets_and_rules(connection, result.items)
    return result


def _attach_targets_and_rules(connection: Connection, items: list[dict[str, Any]]) -> None:
    ids = [item["task_id"] for item in items]
    targets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rules: dict[str, list[str]] = defaultdict(list)
    if ids:
        g, r = tables.task_targets, tables.task_rules
        for row in connection.execute(
            sa.select(g).where(g.c.task_id.in_(ids)).order_by(g.c.target)
        ).mappings():
            targets[row["task_id"]].append(
                {key: row[key] for key in ("target", "state", "state_time", "reason")}
            )
        for row in connection.execute(
            sa.select(r).where(r.c.task_id.in_(ids)).order_by(r.c.rule)
        ).mappings():
            rules[row["task_id"]].append(row["rule"])
    for item in items:
        item["targets"] = targets[item["task_id"]]
        item["rules"] = rules[item["task_id"]]


def search_series(engine: Engine, filters: Filters, page: Page) -> PageOf:
    """Series matching every filter, most recently received first.

    Rule, target and state select series that have a matching task: a series task of the
    series, or a study task of its study.
    """
    s = tables.series
    query = search_series_query(filters).order_by(s.c.last_received.desc(), s.c.series_uid.desc())
    with engine.connect() as connection:
        result = _page(connection, query, page)
        _attach_task_states(connection, result.items)
    return result


def _attach_task_states(connection: Connection, items: list[dict[str, Any]]) -> None:
    """Each series' ``task_states``: the states of its tasks and its study's, sorted."""
    t = tables.tasks
    series_uids = [item["series_uid"] for item in items]
    study_uids = sorted({item["study_uid"] for item in items if item["study_uid"]})
    by_series: dict[str, set[str]] = defaultdict(set)
    by_study: dict[str, set[str]] = defaultdict(set)
    if series_uids:
        for uid, state in connection.execute(
            sa.select(t.c.series_uid, t.c.state).where(t.c.series_uid.in_(series_uids))
        ):
            by_series[uid].add(state)
    if study_uids:
        for uid, state in connection.execute(
            sa.select(t.c.study_uid, t.c.state).where(
                t.c.study_uid.in_(study_uids), t.c.series_uid.is_(None)
            )
        ):
            by_study[uid].add(state)
    for item in items:
        states = by_series[item["series_uid"]] | by_study.get(item["study_uid"] or "", set())
        item["task_states"] = sorted(states)


def search_series_query(filters: Filters) -> sa.Select[Any]:
    """The unordered query of :func:`search_series`."""
    s, t = tables.series, tables.tasks
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (s.c.accession, filters.accession),
        (s.c.patient_id, filters.patient_id),
        (s.c.series_uid, filters.series_uid),
        (s.c.study_uid, filters.study_uid),
        (s.c.modality, filters.modality),
        (s.c.sender_aet, filters.sender_aet),
    ):
        if value:
            conditions.append(column == value)
    if filters.patient_name:
        conditions.append(_name_condition(s.c.patient_name_key, filters.patient_name))
    first_date, last_date = filters.study_dates
    if first_date:
        conditions.append(s.c.study_date >= first_date)
    if last_date:
        conditions.append(s.c.study_date <= last_date)
    if filters.since:
        conditions.append(s.c.last_received >= filters.since)
    if filters.until:
        conditions.append(s.c.first_received < filters.until)
    task_filters = Filters(rule=filters.rule, target=filters.target, states=filters.states)
    task_conditions = _task_conditions(task_filters)
    if task_conditions:
        # Two uncorrelated IN lists rather than one EXISTS with an OR: each is computed once
        # and SQLite cannot use an index for an OR inside a correlated subquery.
        series_tasks = sa.select(t.c.series_uid).where(
            t.c.series_uid.is_not(None), *task_conditions
        )
        study_tasks = sa.select(t.c.study_uid).where(
            t.c.series_uid.is_(None), t.c.study_uid.is_not(None), *task_conditions
        )
        conditions.append(sa.or_(s.c.series_uid.in_(series_tasks), s.c.study_uid.in_(study_tasks)))
    return sa.select(s).where(*conditions)


def search_studies(engine: Engine, filters: Filters, page: Page) -> PageOf:
    """Studies (series grouped by StudyInstanceUID) with a series matching every filter.

    Each study: its identity from its series, how many series and instances were received,
    the modalities, first and last reception; most recently received first.
    """
    s = tables.series
    matching = search_series_query(filters).subquery()
    study_uids = sa.select(matching.c.study_uid).where(matching.c.study_uid.is_not(None))
    query = (
        sa.select(
            s.c.study_uid,
            sa.func.max(s.c.patient_name).label("patient_name"),
            sa.func.max(s.c.patient_id).label("patient_id"),
            sa.func.max(s.c.accession).label("accession"),
            sa.func.max(s.c.study_date).label("study_date"),
            sa.func.max(s.c.study_description).label("study_description"),
            sa.func.count().label("series_count"),
            sa.func.sum(s.c.instance_count).label("instance_count"),
            sa.func.min(s.c.first_received).label("first_received"),
            sa.func.max(s.c.last_received).label("last_received"),
        )
        .where(s.c.study_uid.in_(study_uids))
        .group_by(s.c.study_uid)
        .order_by(sa.func.max(s.c.last_received).desc(), s.c.study_uid.desc())
    )
    with engine.connect() as connection:
        result = _page(connection, query, page)
        uids = [item["study_uid"] for item in result.items]
        modalities: dict[str, set[str]] = defaultdict(set)
        if uids:
            for uid, modality in connection.execute(
                sa.select(s.c.study_uid, s.c.modality)
                .where(s.c.study_uid.in_(uids), s.c.modality.is_not(None))
                .distinct()
            ):
                modalities[uid].add(modality)
    for item in result.items:
        item["modalities"] = sorted(modalities[item["study_uid"]])
    return result


def _name_condition(column: sa.ColumnElement[Any], pattern: str) -> sa.ColumnElement[bool]:
    key = name_key(pattern)
    if "*" not in key and "?" not in key:
        # A prefix is a range of the byte-ordered key: one index range, no LIKE.
        return sa.and_(column >= key, column < key + "\U0010ffff")
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = escaped.replace("*", "%").replace("?", "_")
    return column.like(like, escape="\\")


def series_history(engine: Engine, series_uid: str) -> SeriesHistory | None:
    """A series, its tasks and study tasks, and their events oldest first; None if unknown.

    The events are those of the series (its reception, its completion) and those of every
    task made of it, so the history reads from reception to each target's delivery.
    """
    s, t, e = tables.series, tables.tasks, tables.events
    with engine.connect() as connection:
        row = connection.execute(sa.select(s).where(s.c.series_uid == series_uid)).mappings()
        series = row.first()
        if series is None:
            return None
        belongs = [t.c.series_uid == series_uid]
        if series["study_uid"]:
            belongs.append(sa.and_(t.c.series_uid.is_(None), t.c.study_uid == series["study_uid"]))
        tasks = [
            dict(task)
            for task in connection.execute(
                sa.select(t).where(sa.or_(*belongs)).order_by(t.c.created_at, t.c.task_id)
            ).mappings()
        ]
        _attach_targets_and_rules(connection, tasks)
        ids = [task["task_id"] for task in tasks]
        of_series = sa.and_(e.c.series_uid == series_uid, e.c.task_id.is_(None))
        condition = sa.or_(of_series, e.c.task_id.in_(ids)) if ids else of_series
        events = [
            dict(event)
            for event in connection.execute(
                sa.select(e).where(condition).order_by(e.c.time, e.c.id).limit(HISTORY_EVENTS + 1)
            ).mappings()
        ]
    truncated = len(events) > HISTORY_EVENTS
    return SeriesHistory(dict(series), tasks, events[:HISTORY_EVENTS], truncated)


def _severities_from(minimum: str) -> list[str]:
    return list(kinds.SEVERITIES[kinds.SEVERITIES.index(minimum) :])


def search_events(engine: Engine, filters: EventFilters, page: Page) -> PageOf:
    """Events matching every filter, newest first."""
    e = tables.events
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (e.c.kind, filters.kind),
        (e.c.service, filters.service),
        (e.c.task_id, filters.task_id),
        (e.c.series_uid, filters.series_uid),
        (e.c.study_uid, filters.study_uid),
    ):
        if value:
            conditions.append(column == value)
    if filters.kind_prefix:
        conditions.append(e.c.kind.startswith(filters.kind_prefix, autoescape=True))
    if filters.min_severity:
        conditions.append(e.c.severity.in_(_severities_from(filters.min_severity)))
    if filters.since:
        conditions.append(e.c.time >= filters.since)
    if filters.until:
        conditions.append(e.c.time < filters.until)
    query = sa.select(e).where(*conditions).order_by(e.c.time.desc(), e.c.id.desc())
    with engine.connect() as connection:
        return _page(connection, query, page)


def search_audit(
    engine: Engine,
    page: Page,
    *,
    user: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> PageOf:
    """Web audit entries, newest first."""
    a = tables.audit
    conditions: list[sa.ColumnElement[bool]] = []
    if user:
        conditions.append(a.c.user == user)
    if action:
        conditions.append(a.c.action == action)
    if since:
        conditions.append(a.c.time >= since)
    if until:
        conditions.append(a.c.time < until)
    query = sa.select(a).where(*conditions).order_by(a.c.time.desc(), a.c.event_id.desc())
    with engine.connect() as connection:
        return _page(connection, query, page)


def task_detail(engine: Engine, task_id: str) -> TaskDetail | None:
    """A task with targets, rules, version list and processing runs; None if unknown."""
    t, v, p = tables.tasks, tables.task_versions, tables.processing
    with engine.connect() as connection:
        row = connection.execute(sa.select(t).where(t.c.task_id == task_id)).mappings().first()
        if row is None:
            return None
        task = dict(row)
        _attach_targets_and_rules(connection, [task])
        versions = connection.execute(
            sa.select(v.c.event_id, v.c.time, v.c.kind)
            .where(v.c.task_id == task_id)
            .order_by(v.c.time, v.c.event_id)
        ).mappings()
        runs = connection.execute(
            sa.select(p).where(p.c.task_id == task_id).order_by(p.c.ended_at)
        ).mappings()
        return TaskDetail(
            task=task,
            targets=task.pop("targets"),
            rules=task.pop("rules"),
            versions=[dict(version) for version in versions],
            processing=[dict(run) for run in runs],
        )


def task_versions(engine: Engine, task_id: str) -> list[dict[str, Any]]:
    """Every recorded version of a task's ``task.json``, oldest first."""
    v = tables.task_versions
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(v).where(v.c.task_id == task_id).order_by(v.c.time, v.c.event_id)
        ).mappings()
        return [dict(row) for row in rows]


def timeline(engine: Engine, task_id: str) -> list[dict[str, Any]] | None:
    """Everything that happened to a task, oldest first; None if the task is unknown.

    Besides the task's own events this includes the reception of its series (events of the
    series that belong to no task), so that it reads from reception to dispatch and clean-up.
    """
    t, e = tables.tasks, tables.events
    with engine.connect() as connection:
        task = connection.execute(
            sa.select(t.c.series_uid, t.c.study_uid).where(t.c.task_id == task_id)
        ).first()
        if task is None:
            return None
        series_uids = {
            uid
            for uid in connection.execute(
                sa.select(e.c.series_uid).where(e.c.task_id == task_id).distinct()
            ).scalars()
            if uid
        }
        if task.series_uid:
            series_uids.add(task.series_uid)
        reception: list[sa.ColumnElement[bool]] = []
        if series_uids:
            reception.append(e.c.series_uid.in_(sorted(series_uids)))
        if task.study_uid and not task.series_uid:
            reception.append(
                sa.and_(e.c.study_uid == task.study_uid, e.c.kind == kinds.SERIES_RECEIVED)
            )
        belongs = [e.c.task_id == task_id]
        if reception:
            belongs.append(sa.and_(e.c.task_id.is_(None), sa.or_(*reception)))
        rows = connection.execute(
            sa.select(e).where(sa.or_(*belongs)).order_by(e.c.time, e.c.id)
        ).mappings()
        return [dict(row) for row in rows]


def _bucket_start(time: datetime, bucket: Bucket) -> datetime:
    start = hour_of(time)
    return start.replace(hour=0) if bucket == "day" else start


def statistics(
    engine: Engine, bucket: Bucket, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Throughput per hour or day: the counts of the kinds in :data:`kinds.STATISTICS`,
    instances received and dispatched, and events of severity error or worse.

    Buckets are whole UTC hours or days: every bucket that [since, until) touches is listed,
    the empty ones too. They are read from the hourly ``event_counts``, not from the events.
    """
    first, step = _bucket_start(since, bucket), timedelta(seconds=BUCKET_SECONDS[bucket])
    if until <= first:
        return []
    count = int((until - first) / step) + (1 if (until - first) % step else 0)
    if count > MAX_BUCKETS:
        raise ValueError(f"the range has {count} buckets; at most {MAX_BUCKETS} allowed")
    counters = [*kinds.STATISTICS, "instances_received", "instances_dispatched", "errors"]
    table = {first + step * n: dict.fromkeys(counters, 0) for n in range(count)}
    name_of_kind = {kind: name for name, kind in kinds.STATISTICS.items()}
    errors = set(_severities_from("error"))
    c = tables.event_counts
    query = sa.select(c.c.hour, c.c.kind, c.c.severity, c.c.events, c.c.instances).where(
        c.c.hour >= first,
        c.c.hour < first + step * count,
        sa.or_(c.c.kind.in_(list(name_of_kind)), c.c.severity.in_(sorted(errors))),
    )
    with engine.connect() as connection:
        for row in connection.execute(query):
            counts = table[_bucket_start(row.hour, bucket)]
            name = name_of_kind.get(row.kind)
            if name is not None:
                counts[name] += row.events
            if row.kind == kinds.SERIES_RECEIVED:
                counts["instances_received"] += row.instances
            elif row.kind == kinds.DISPATCH_COMPLETE:
                counts["instances_dispatched"] += row.instances
            if row.severity in errors:
                counts["errors"] += row.events
    return [{"start": start, **counts} for start, counts in sorted(table.items())]


def task_states(engine: Engine) -> dict[str, int]:
    """How many tasks the bookkeeper knows in each state."""
    t = tables.tasks
    with engine.connect() as connection:
        rows = connection.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state))
        return {state: count for state, count in rows}


def rule_hits(
    engine: Engine, since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Per rule: how many tasks created in ``[since, until)`` it fired for, and how many
    distinct series those were (a task without a series UID adds none), most hits first."""
    t, r = tables.tasks, tables.task_rules
    conditions = [t.c.created_at >= since]
    if until is not None:
        conditions.append(t.c.created_at < until)
    query = (
        sa.select(
            r.c.rule,
            sa.func.count(sa.distinct(t.c.task_id)).label("tasks"),
            sa.func.count(sa.distinct(t.c.series_uid)).label("series"),
        )
        .join(t, t.c.task_id == r.c.task_id)
        .where(*conditions)
        .group_by(r.c.rule)
        .order_by(sa.desc("tasks"), r.c.rule)
    )
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def last_received(
    engine: Engine, series_uids: set[str], study_uids: set[str]
) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """When the last instance of each series, and of each study's series, was received."""
    s = tables.series
    by_series: dict[str, datetime] = {}
    by_study: dict[str, datetime] = {}
    with engine.connect() as connection:
        if series_uids:
            rows = connection.execute(
                sa.select(s.c.series_uid, s.c.last_received).where(
                    s.c.series_uid.in_(sorted(series_uids))
                )
            )
            by_series = {uid: moment for uid, moment in rows}
        if study_uids:
            rows = connection.execute(
                sa.select(s.c.study_uid, sa.func.max(s.c.last_received))
                .where(s.c.study_uid.in_(sorted(study_uids)))
                .group_by(s.c.study_uid)
            )
            by_study = {uid: moment for uid, moment in rows}
    return by_series, by_study


TARGET_STATS_KINDS = (kinds.DISPATCH_BEGIN, kinds.DISPATCH_COMPLETE, kinds.DISPATCH_FAILED)
MAX_TARGET_STATS_EVENTS = 500_000
"""Dispatch events read for one answer at most (the newest are kept when there are more)."""


def target_statistics(engine: Engine, since: datetime, until: datetime) -> dict[str, Any]:
    """Delivery per target in [since, until), from the dispatcher's events.

    Per target: attempts that delivered (``dispatch.complete``), attempts that failed and will
    be retried, final failures (the target gave up: the task went to ``error/``), the mean and
    longest time of a delivering attempt (from its ``dispatch.begin``), and the last failure
    with its time. Reads the ``(kind, time)`` index; the target is a key of the event's data.
    """
    e = tables.events
    target = e.c.data["target"].as_string()
    query = (
        sa.select(e.c.kind, e.c.time, e.c.task_id, target.label("target"), e.c.data)
        .where(e.c.kind.in_(TARGET_STATS_KINDS), e.c.time >= since, e.c.time < until)
        .order_by(e.c.time.desc())
        .limit(MAX_TARGET_STATS_EVENTS + 1)
    )
    stats: dict[str, dict[str, Any]] = {}
    durations: dict[str, list[float]] = defaultdict(list)
    ends: dict[tuple[str, str], datetime] = {}
    truncated = False
    with engine.connect() as connection:
        for number, row in enumerate(connection.execute(query)):
            if number >= MAX_TARGET_STATS_EVENTS:
                truncated = True
                break
            if not row.target:
                continue
            item = stats.setdefault(
                row.target,
                {
                    "target": row.target,
                    "delivered": 0,
                    "retried": 0,
                    "failed": 0,
                    "instances": 0,
                    "bytes": 0,
                    "last_delivered": None,
                    "last_error": None,
                    "last_error_time": None,
                },
            )
            key = (row.task_id or "", row.target)
            data = row.data if isinstance(row.data, dict) else {}
            if row.kind == kinds.DISPATCH_COMPLETE:
                item["delivered"] += 1
                item["instances"] += _int(data.get("instances"))
                item["bytes"] += _int(data.get("bytes"))
                item["last_delivered"] = item["last_delivered"] or row.time
                ends[key] = row.time  # newest first: the begin before it comes later
            elif row.kind == kinds.DISPATCH_FAILED:
                final = not (data.get("will_retry") or data.get("final") is False)
                item["failed" if final else "retried"] += 1
                if item["last_error"] is None:
                    item["last_error"] = str(data.get("reason") or "")[:2000] or None
                    item["last_error_time"] = row.time
                ends.pop(key, None)
            else:  # a begin: the attempt's duration, if it delivered
                end = ends.pop(key, None)
                if end is not None:
                    durations[row.target].append((end - row.time).total_seconds())
    for name, item in stats.items():
        taken = durations.get(name, [])
        item["mean_seconds"] = sum(taken) / len(taken) if taken else None
        item["max_seconds"] = max(taken) if taken else None
    return {
        "since": since,
        "until": until,
        "truncated": truncated,
        "targets": sorted(stats.values(), key=lambda item: item["target"]),
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


RETRIEVE_JOB_FINISHED = ("done", "failed", "cancelled")
"""States of :data:`kinds.RETRIEVE_JOB_STATES` after which a job does nothing more."""
RETRIEVE_JOB_FIELDS: dict[str, tuple[type, ...]] = {
    "source": (str,),
    "state": (str,),
    "studies_total": (int,),
    "studies_done": (int,),
    "studies_failed": (int,),
    "studies_remaining": (int,),
    "instances": (int,),
    "rate": (int, float),
    "offpeak": (bool,),
    "reason": (str,),
}
"""The data of a ``retrieve.job`` event that the list shows, with the types it may have."""


def _job_field(data: dict[str, Any], key: str) -> Any:
    """``data[key]`` if it has the documented type (another service's event is no promise)."""
    value = data.get(key)
    allowed = RETRIEVE_JOB_FIELDS[key]
    if isinstance(value, bool) and bool not in allowed:
        return None
    return value if isinstance(value, allowed) else None


def retrieve_jobs(
    engine: Engine,
    now: datetime,
    *,
    finished_within: timedelta = timedelta(days=7),
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The latest ``retrieve.job`` event of each job, newest first: jobs not finished, and
    jobs that finished within ``finished_within`` of ``now``.

    One query over the events (the ``kind, time`` index narrows it to ``retrieve.job``): a
    window numbers each job's events newest first and the first of each is kept. A job that
    waits (paused, off-peak) emits nothing for a while, so its latest event may be old; it
    stays listed until it finishes.
    """
    e = tables.events
    job = e.c.data["job"].as_string()
    ranked = (
        sa.select(
            e.c.time,
            e.c.data,
            job.label("job"),
            sa.func.row_number()
            .over(partition_by=job, order_by=(e.c.time.desc(), e.c.id.desc()))
            .label("newest"),
        )
        .where(e.c.kind == kinds.RETRIEVE_JOB)
        .subquery()
    )
    state = ranked.c.data["state"].as_string()
    query = (
        sa.select(ranked.c.time, ranked.c.job, ranked.c.data)
        .where(
            ranked.c.newest == 1,
            ranked.c.job.is_not(None),
            sa.or_(
                state.is_(None),
                state.not_in(RETRIEVE_JOB_FINISHED),
                ranked.c.time >= now - finished_within,
            ),
        )
        .order_by(ranked.c.time.desc(), ranked.c.job)
        .limit(limit)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    jobs = []
    for row in rows:
        data = row.data if isinstance(row.data, dict) else {}
        jobs.append(
            {
                "job": row.job,
                "time": row.time,
                **{key: _job_field(data, key) for key in RETRIEVE_JOB_FIELDS},
            }
        )
    return jobs
