"""Storing a batch of events: once per event id, projections updated in the same transaction.

The ``events`` insert skips ids already stored (``INSERT … ON CONFLICT DO NOTHING RETURNING``,
the same statement on SQLite and PostgreSQL) and only the events it really inserted are
projected, so a batch sent twice changes nothing the second time. The projection rows are
merged with the stored ones by SQL expressions that follow the rules of :mod:`projection`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from mercure.bookkeeper import tables
from mercure.bookkeeper.database import DatabaseError, write_connection
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

    Raises :class:`DatabaseError` when the database is unavailable (the sender retries).
    """
    first_of_id: dict[str, Event] = {}
    for event in events:
        first_of_id.setdefault(event.id, event)
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
    inserted = set(
        connection.execute(
            _insert(connection, tables.events)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(tables.events.c.id),
            rows,
        ).scalars()
    )
    new = [event for event, row in zip(events, rows, strict=True) if row["id"] in inserted]
    _apply(connection, project(new))
    return new


def _insert(connection: Connection, table: sa.Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _apply(connection: Connection, projection: Projection) -> None:
    # Rows go in key order so that concurrent batches lock rows in the same order.
    if projection.series:
        _upsert_series(connection, _sorted(projection.series))
    if projection.tasks:
        _upsert_tasks(connection, _sorted(projection.tasks))
    if projection.task_targets:
        _upsert_targets(connection, _sorted(projection.task_targets))
    if projection.task_rules:
        rows = [{"task_id": t, "rule": r} for t, r in sorted(projection.task_rules)]
        _insert_new(connection, tables.task_rules, rows)
    for table, rows in (
        (tables.task_versions, projection.task_versions),
        (tables.processing, projection.processing),
        (tables.audit, projection.audit),
    ):
        if rows:
            _insert_new(connection, table, rows)


def _sorted(rows: dict[Any, Row]) -> list[Row]:
    return [rows[key] for key in sorted(rows)]


def _insert_new(connection: Connection, table: sa.Table, rows: list[Row]) -> None:
    connection.execute(_insert(connection, table).on_conflict_do_nothing(), rows)


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


def _upsert_series(connection: Connection, rows: list[Row]) -> None:
    table = tables.series
    statement = _insert(connection, table)
    new = statement.excluded
    updates: dict[str, Any] = {column: _first(table, new, column) for column in SERIES_IDENTITY}
    updates.update(
        instance_count=table.c.instance_count + new.instance_count,
        first_received=_least(table, new, "first_received"),
        last_received=_greatest(table, new, "last_received"),
    )
    connection.execute(
        statement.on_conflict_do_update(index_elements=["series_uid"], set_=updates), rows
    )


def _upsert_tasks(connection: Connection, rows: list[Row]) -> None:
    table = tables.tasks
    statement = _insert(connection, table)
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
    connection.execute(
        statement.on_conflict_do_update(index_elements=["task_id"], set_=updates), rows
    )


def _upsert_targets(connection: Connection, rows: list[Row]) -> None:
    table = tables.task_targets
    statement = _insert(connection, table)
    new = statement.excluded
    updates = {
        column: _later(table, new, column, "state_time")
        for column in ("state", "reason", "state_time")
    }
    connection.execute(
        statement.on_conflict_do_update(index_elements=["task_id", "target"], set_=updates),
        rows,
    )
