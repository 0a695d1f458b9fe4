"""Retention: old events and finished tasks are pruned in batches; active work is kept."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from bookkeeper_pipeline import Pipeline
from sqlalchemy.engine import Engine

from mercure.bookkeeper import tables
from mercure.bookkeeper.ingest import ingest
from mercure.bookkeeper.retention import prune
from mercure.core.clock import utcnow
from mercure.core.events import Event


def _aged(events: list[Event], age: timedelta) -> list[Event]:
    return [event.model_copy(update={"time": event.time - age}) for event in events]


def _keys(engine: Engine, table: sa.Table, column: str) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(sa.select(table.c[column])).scalars())


def test_old_finished_tasks_and_events_are_pruned(engine: Engine, tmp_path: Path) -> None:
    """Past the retention age finished tasks go whole; active tasks and recent data stay."""
    old, recent = timedelta(days=100), timedelta(days=1)
    pipeline = Pipeline(tmp_path / "outbox")
    for index in range(6):
        pipeline.run_series(index, process=True, fail=index == 5)
    old_events = _aged(pipeline.emitted, old)
    active = _aged(
        [
            Event(
                service="router", kind="task.created", task_id="active", data={"stage": "outgoing"}
            ),
            Event(service="router", kind="rule.error", message="old system event"),
            Event(service="webgui", kind="audit.login", data={"user": "alice"}),
        ],
        old,
    )
    pipeline.emitted.clear()
    pipeline.run_series(10)
    recent_events = _aged(pipeline.emitted, recent)
    pipeline.stop()
    ingest(engine, old_events + active + recent_events)

    result = prune(engine, utcnow() - timedelta(days=90), batch_size=2)

    assert _keys(engine, tables.tasks, "task_id") == {"active", "task-0010"}
    assert _keys(engine, tables.task_versions, "task_id") == {"task-0010"}
    assert _keys(engine, tables.task_targets, "task_id") == {"task-0010"}
    assert _keys(engine, tables.task_rules, "task_id") == {"task-0010"}
    assert _keys(engine, tables.processing, "task_id") == set()
    remaining = _keys(engine, tables.events, "id")
    assert remaining == {e.id for e in recent_events} | {active[0].id}
    assert _keys(engine, tables.series, "series_uid") == {recent_events[0].series_uid}
    assert _keys(engine, tables.audit, "event_id") == set()
    assert result.deleted["tasks"] == 6
    assert result.deleted["events"] == len(old_events) + 2
    assert result.deleted["processing"] == 6


def test_pruning_twice_deletes_nothing_more(engine: Engine, tmp_path: Path) -> None:
    """A second pass over pruned data finds nothing."""
    pipeline = Pipeline(tmp_path / "outbox")
    pipeline.run_series(0)
    pipeline.stop()
    ingest(engine, _aged(pipeline.emitted, timedelta(days=10)))
    cutoff: datetime = utcnow() - timedelta(days=5)
    assert prune(engine, cutoff).total > 0
    assert prune(engine, cutoff).total == 0


def test_deleted_tasks_are_finished_and_pruned_like_cleaned_ones(engine: Engine) -> None:
    """A task an operator deleted (state `deleted`) is done: retention prunes it when old."""
    created = Event(
        service="router", kind="task.created", task_id="t-1", data={"stage": "outgoing"}
    )
    deleted = Event(
        service="cli",
        kind="task.deleted",
        task_id="t-1",
        data={"stage": "deleted", "from_stage": "outgoing", "user": "alice (command line)"},
    )
    ingest(engine, _aged([created, deleted], timedelta(days=100)))
    with engine.connect() as connection:
        state = connection.execute(sa.select(tables.tasks.c.state)).scalar_one()
    assert state == "deleted"
    prune(engine, utcnow() - timedelta(days=90))
    assert _keys(engine, tables.tasks, "task_id") == set()
