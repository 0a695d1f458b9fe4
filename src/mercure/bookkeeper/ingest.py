"""Storing a batch of events: once per event id, projections updated in the same transaction.

The ``events`` insert skips ids already stored (:mod:`event_store`) and only the events it
really inserted are projected, so a batch sent twice changes nothing the second time. The
projection rows are merged with the stored ones by SQL expressions that follow the rules of
:mod:`projection`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from mercure.bookkeeper import tables
from mercure.bookkeeper.database import DatabaseError, write_connection
from mercure.bookkeeper.event_store import insert_new_events
from mercure.bookkeeper.projection import (
    SERIES_IDENTITY,
    TASK_DOCUMENT,
    TASK_IDENTITY,
    Projection,
    Row,
    event_row,
    project,
)
from mercure.core.clock import utcnow
from mercure.core.events import Event
from mercure.core.masking import scrub, scrub_data

log = logging.getLogger(__name__)

ATTEMPTS = 3
"""Transactions that lost a deadlock or serialization race are repeated this often."""
_RETRYABLE_PGCODES = ("40001", "40P01")


@dataclass(frozen=True)
class IngestResult:
    """What a batch did: ``stored`` events were new, ``duplicates`` were known already."""

    stored: int
    duplicates: int
    new_events: tuple[Event, ...] = ()


def ingest(engine: Engine, events: Sequence[Event]) -> IngestResult:
    """Store a batch of events and update the projections; idempotent by event id.

    Message and data of each event are scrubbed of secrets first: senders scrub too, this is
    the defence in depth for what is stored and answered (an older or foreign sender).

    Raises :class:`DatabaseError` when the database is unavailable (the sender retries).
    """
    first_of_id: dict[str, Event] = {}
    for event in events:
        if event.id in first_of_id:
            continue
        update: dict[str, Any] = {
            "message": scrub(event.message),
            "data": scrub_data(event.data),
        }
        if event.time.tzinfo is None:
            # A time without zone is UTC (as the API documents), everywhere from here on.
            update["time"] = event.time.replace(tzinfo=UTC)
        first_of_id[event.id] = event.model_copy(update=update)
    unique = list(first_of_id.values())
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with write_connection(engine) as connection, connection.begin():
                new = _store(connection, unique)
            return IngestResult(len(new), len(events) - len(new), tuple(new))
        except sa.exc.OperationalError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            if code in _RETRYABLE_PGCODES and attempt < ATTEMPTS:
                log.info("event batch lost a lock race (%s); repeating it", code)
                time.sleep(0.05 * attempt)
                continue
            raise DatabaseError(f"cannot store events: {exc.orig}") from exc
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"cannot store events: {exc.orig}") from exc
    raise AssertionError("unreachable")


def _store(connection: Connection, events: Sequence[Event]) -> list[Event]:
    if not events:
        return []
    now = utcnow()
    rows = [event_row(event, now) for event in events]
    inserted = insert_new_events(connection, rows)
    new = [event for event, row in zip(events, rows, strict=True) if row["id"] in inserted]
    _apply(connection, project(new))
    return new


def _apply(connection: Connection, projection: Projection) -> None:
    # Rows go in key order so that concurrent batches lock rows in the same order.
    dialect = connection.dialect.name
    if projection.series:
        connection.execute(_upsert_series(dialect), _sorted(projection.series))
    if projection.tasks:
        connection.execute(_upsert_tasks(dialect), _sorted(projection.tasks))
    _fill_study_uids(connection, projection)
    if projection.task_targets:
        connection.execute(_upsert_targets(dialect), _sorted(projection.task_targets))
    if projection.event_counts:
        connection.execute(_add_counts(dialect), _sorted(projection.event_counts))
    if projection.task_rules:
        rows = [{"task_id": t, "rule": r} for t, r in sorted(projection.task_rules)]
        connection.execute(_insert_new(dialect, tables.task_rules.name), rows)
    for table, rows in (
        (tables.task_versions, projection.task_versions),
        (tables.processing, projection.processing),
        (tables.audit, projection.audit),
    ):
        if rows:
            connection.execute(_insert_new(dialect, table.name), rows)


def _fill_study_uids(connection: Connection, projection: Projection) -> None:
    """Series tasks take their series' study UID: task.json names no study for them, so the
    task events of the dispatcher or processor cannot say it. Both orders are covered: a
    task seen before its series row, and a series row arriving after its tasks."""
    uids = set(projection.series)
    uids.update(
        row["series_uid"]
        for row in projection.tasks.values()
        if row["series_uid"] and not row["study_uid"]
    )
    if not uids:
        return
    t, s = tables.tasks, tables.series
    study = sa.select(s.c.study_uid).where(s.c.series_uid == t.c.series_uid).scalar_subquery()
    connection.execute(
        sa.update(t)
        .where(t.c.study_uid.is_(None), t.c.series_uid.in_(sorted(uids)))
        .values(study_uid=study)
    )


def _sorted(rows: dict[Any, Row]) -> list[Row]:
    return [rows[key] for key in sorted(rows)]


# The statements are the same for every batch: build each once per dialect.
def _insert(dialect: str, table: sa.Table) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


@functools.cache
def _insert_new(dialect: str, table_name: str) -> Any:
    return _insert(dialect, tables.metadata.tables[table_name]).on_conflict_do_nothing()


def _later(stored: sa.Table, new: Any, value: str, clock: str) -> sa.ColumnElement[Any]:
    """The new value if its clock is not older than the stored one (latest event wins)."""
    return sa.case(
        (
            sa.and_(
                new[clock].is_not(None),
                sa.or_(stored.c[clock].is_(None), new[clock] >= stored.c[clock]),
            ),
            new[value],
        ),
        else_=stored.c[value],
    )


def _least(stored: sa.Table, new: Any, column: str) -> sa.ColumnElement[Any]:
    return sa.case((new[column] < stored.c[column], new[column]), else_=stored.c[column])


def _greatest(stored: sa.Table, new: Any, column: str) -> sa.ColumnElement[Any]:
    return sa.case((new[column] > stored.c[column], new[column]), else_=stored.c[column])


def _first(stored: sa.Table, new: Any, column: str) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(stored.c[column], new[column])


@functools.cache
def _upsert_series(dialect: str) -> Any:
    table = tables.series
    statement = _insert(dialect, table)
    new = statement.excluded
    updates: dict[str, Any] = {column: _first(table, new, column) for column in SERIES_IDENTITY}
    updates.update(
        instance_count=table.c.instance_count + new.instance_count,
        first_received=_least(table, new, "first_received"),
        last_received=_greatest(table, new, "last_received"),
    )
    return statement.on_conflict_do_update(index_elements=["series_uid"], set_=updates)


@functools.cache
def _upsert_tasks(dialect: str) -> Any:
    table = tables.tasks
    statement = _insert(dialect, table)
    new = statement.excluded
    updates: dict[str, Any] = {column: _first(table, new, column) for column in TASK_IDENTITY}
    for column in TASK_DOCUMENT:
        updates[column] = _later(table, new, column, "document_time")
    updates.update(
        document_time=_later(table, new, "document_time", "document_time"),
        state=_later(table, new, "state", "state_time"),
        state_time=_later(table, new, "state_time", "state_time"),
        fail_stage=_later(table, new, "fail_stage", "fail_time"),
        fail_reason=_later(table, new, "fail_reason", "fail_time"),
        fail_time=_later(table, new, "fail_time", "fail_time"),
        version_count=table.c.version_count + new.version_count,
        created_at=_least(table, new, "created_at"),
        updated_at=_greatest(table, new, "updated_at"),
    )
    return statement.on_conflict_do_update(index_elements=["task_id"], set_=updates)


@functools.cache
def _upsert_targets(dialect: str) -> Any:
    table = tables.task_targets
    statement = _insert(dialect, table)
    new = statement.excluded
    updates = {
        column: _later(table, new, column, "state_time")
        for column in ("state", "reason", "state_time")
    }
    return statement.on_conflict_do_update(index_elements=["task_id", "target"], set_=updates)


@functools.cache
def _add_counts(dialect: str) -> Any:
    table = tables.event_counts
    statement = _insert(dialect, table)
    new = statement.excluded
    updates = {
        "events": table.c.events + new.events,
        "instances": table.c.instances + new.instances,
    }
    return statement.on_conflict_do_update(
        index_elements=["hour", "kind", "severity"], set_=updates
    )
