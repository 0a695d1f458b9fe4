"""Inserting the rows of the ``events`` table: once per id, and fast, on each dialect.

This is the one table every event goes into, so it bypasses SQLAlchemy's per-value type
processing (which costs more than the database work) and hands the driver ready values:

- SQLite: the write transaction began with ``BEGIN IMMEDIATE``, so no other writer can run
  until commit; looking up which ids exist and then inserting the others is race-free.
- PostgreSQL: one ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING id``
  statement: a dozen array parameters instead of thousands of scalars, and the database
  itself says which rows were new, also when two batches race.

Both store exactly what the ``tables.events`` column types would (UTC timestamps, JSON text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from mercure.bookkeeper.projection import Row

COLUMNS = (
    "id",
    "time",
    "received_at",
    "service",
    "instance",
    "kind",
    "severity",
    "task_id",
    "series_uid",
    "study_uid",
    "message",
    "data",
)
_SQLITE_LOOKUP_CHUNK = 500
_PG_TYPES = {"time": "timestamptz", "received_at": "timestamptz", "data": "text"}


def insert_new_events(connection: Connection, rows: Sequence[Row]) -> set[str]:
    """Insert the rows whose id is not stored yet; the ids that were inserted."""
    if not rows:
        return set()
    if connection.dialect.name == "postgresql":
        return _insert_postgresql(connection, rows)
    return _insert_sqlite(connection, rows)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sqlite_time(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime stores (UTC, see tables.UTCDateTime).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert_sqlite(connection: Connection, rows: Sequence[Row]) -> set[str]:
    ids = [row["id"] for row in rows]
    existing: set[str] = set()
    for start in range(0, len(ids), _SQLITE_LOOKUP_CHUNK):
        chunk = tuple(ids[start : start + _SQLITE_LOOKUP_CHUNK])
        marks = ",".join("?" * len(chunk))
        result = connection.exec_driver_sql(f"SELECT id FROM events WHERE id IN ({marks})", chunk)
        existing.update(result.scalars())
    new = [row for row in rows if row["id"] not in existing]
    if new:
        values = [
            (
                *(
                    _sqlite_time(row[c]) if c in ("time", "received_at") else row[c]
                    for c in COLUMNS[:-1]
                ),
                _json(row["data"]),
            )
            for row in new
        ]
        connection.exec_driver_sql(
            f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            values,
        )
    return {row["id"] for row in new}


def _insert_postgresql(connection: Connection, rows: Sequence[Row]) -> set[str]:
    # In id order, so that two batches sharing ids wait for each other instead of deadlocking.
    rows = sorted(rows, key=lambda row: row["id"])
    arrays = [
        [_json(row["data"]) for row in rows] if column == "data" else [row[column] for row in rows]
        for column in COLUMNS
    ]
    unnest = ", ".join(f"%b::{_PG_TYPES.get(column, 'varchar')}[]" for column in COLUMNS)
    selected = ", ".join("data::json" if c == "data" else c for c in COLUMNS)
    statement = (
        f"INSERT INTO events ({', '.join(COLUMNS)}) "
        f"SELECT {selected} FROM unnest({unnest}) AS incoming({', '.join(COLUMNS)}) "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    )
    return set(connection.exec_driver_sql(statement, tuple(arrays)).scalars())
