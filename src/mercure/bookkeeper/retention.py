"""Retention: events and finished tasks older than ``bookkeeper.retention`` are pruned.

Deletes go in small batches, each its own transaction, so that ingest (which on SQLite needs
the single write lock) is never held up for long. A task goes as a whole (row, versions,
targets, rules, processing runs) once it is finished and its last event is older than the
cut-off; an event goes when it is older than the cut-off and its task, if any, is gone. So the
timeline of a task that is still in the database is always complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mercure.bookkeeper import kinds, tables
from mercure.bookkeeper.database import DatabaseError, write_connection
from mercure.bookkeeper.projection import hour_of

log = logging.getLogger(__name__)

BATCH_SIZE = 5000


@dataclass
class PruneResult:
    """Rows deleted, by table."""

    deleted: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, count: int) -> None:
        """Count ``count`` more rows deleted from ``table``."""
        self.deleted[table] = self.deleted.get(table, 0) + count

    @property
    def total(self) -> int:
        """Rows deleted in all tables."""
        return sum(self.deleted.values())


def prune(engine: Engine, cutoff: datetime, *, batch_size: int = BATCH_SIZE) -> PruneResult:
    """Delete what is older than ``cutoff``; returns what went. Raises :class:`DatabaseError`."""
    result = PruneResult()
    try:
        _prune_tasks(engine, cutoff, batch_size, result)
        e = tables.events
        _prune_keyed(engine, e, e.c.id, _old_events(cutoff), batch_size, result)
        s = tables.series
        _prune_keyed(engine, s, s.c.series_uid, s.c.last_received < cutoff, batch_size, result)
        a = tables.audit
        _prune_keyed(engine, a, a.c.event_id, a.c.time < cutoff, batch_size, result)
        _prune_counts(engine, cutoff, result)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"retention could not prune: {exc.orig}") from exc
    if result.total:
        log.info("retention pruned %s", ", ".join(f"{n} {t}" for t, n in result.deleted.items()))
    return result


def _old_events(cutoff: datetime) -> sa.ColumnElement[bool]:
    e, t = tables.events, tables.tasks
    task_gone = ~sa.exists().where(t.c.task_id == e.c.task_id)
    return sa.and_(e.c.time < cutoff, sa.or_(e.c.task_id.is_(None), task_gone))


def _prune_tasks(engine: Engine, cutoff: datetime, batch_size: int, result: PruneResult) -> None:
    t = tables.tasks
    finished = sa.and_(t.c.state.in_(kinds.FINISHED_STATES), t.c.updated_at < cutoff)
    dependants = (tables.task_versions, tables.task_targets, tables.task_rules, tables.processing)
    while True:
        with write_connection(engine) as connection, connection.begin():
            ids = list(
                connection.execute(
                    sa.select(t.c.task_id).where(finished).limit(batch_size)
                ).scalars()
            )
            if not ids:
                return
            for table in dependants:
                deleted = connection.execute(sa.delete(table).where(table.c.task_id.in_(ids)))
                result.add(table.name, deleted.rowcount)
            connection.execute(sa.delete(t).where(t.c.task_id.in_(ids)))
            result.add(t.name, len(ids))


def _prune_counts(engine: Engine, cutoff: datetime, result: PruneResult) -> None:
    # A few rows per hour: one statement is small enough.
    c = tables.event_counts
    with write_connection(engine) as connection, connection.begin():
        deleted = connection.execute(sa.delete(c).where(c.c.hour < hour_of(cutoff))).rowcount
    result.add(c.name, deleted)


def _prune_keyed(
    engine: Engine,
    table: sa.Table,
    key: sa.Column[str],
    condition: sa.ColumnElement[bool],
    batch_size: int,
    result: PruneResult,
) -> None:
    while True:
        with write_connection(engine) as connection, connection.begin():
            batch = sa.select(key).where(condition).limit(batch_size).scalar_subquery()
            deleted = connection.execute(sa.delete(table).where(key.in_(batch))).rowcount
        result.add(table.name, deleted)
        if deleted < batch_size:
            return
