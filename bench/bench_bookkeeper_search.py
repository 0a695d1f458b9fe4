"""Searches of the bookkeeper over 1,000,000 task events, on SQLite and on PostgreSQL.

The bench fills a fresh database with synthetic tasks until it holds ``--task-events`` task
events (default 1,000,000: about nine per task plus the reception of its series, spread over
30 days) through the same
``ingest`` code the write API runs, refreshes the planner statistics (``PRAGMA optimize`` /
``ANALYZE``: the service does it after each retention pass, PostgreSQL's autovacuum on its
own), starts ``mercure bookkeeper`` on it and times each read API call over HTTP with
varying values.

    .venv/bin/python bench/bench_bookkeeper_search.py [--backend both] [--task-events 1000000]

Target: every search answers in under 200 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_bookkeeper_ingest import (
    PATIENTS,
    RULES,
    TARGETS,
    api_client,
    bookkeeper,
    database,
    task_events,
)

from mercure.bookkeeper import tables
from mercure.bookkeeper.database import create_database_engine, migrate, optimize
from mercure.bookkeeper.ingest import ingest
from mercure.core.events import Event

SPAN = timedelta(days=30)
LOAD_BATCH = 10_000
RUNS = 20
EVENTS_PER_TASK = 9
"""About how many task events task_events() makes per task (for the time spacing)."""
TARGET_MS = 200.0


def task_spacing(task_events_wanted: int, *, count_all: bool = False) -> timedelta:
    """Time between two generated tasks, so that they span :data:`SPAN` (``count_all``: the
    number counts events of any kind, one more per task: the reception of its series)."""
    per_task = EVENTS_PER_TASK + 1 if count_all else EVENTS_PER_TASK
    return SPAN / (task_events_wanted / per_task)


def fill(
    url: str, task_events_wanted: int, end: datetime, *, count_all: bool = False
) -> tuple[int, int, int]:
    """Ingest tasks until there are ``task_events_wanted`` task events (with ``count_all``:
    events of any kind); (tasks, task events, all events)."""
    engine = create_database_engine(url)
    migrate(engine)
    rng = random.Random(42)
    spacing = task_spacing(task_events_wanted, count_all=count_all)
    start = end - SPAN
    batch: list[Event] = []
    total = task_total = task = 0
    started = time.perf_counter()
    while (total if count_all else task_total) < task_events_wanted:
        events = task_events(task, start + spacing * task, rng)
        batch += events
        total += len(events)
        task_total += sum(1 for e in events if e.task_id)
        task += 1
        if len(batch) >= LOAD_BATCH:
            ingest(engine, batch)
            batch = []
        if task % 10_000 == 0:
            print(
                f"    {task:>9,} tasks, {total:>10,} events, {time.perf_counter() - started:5.0f} s"
            )
    ingest(engine, batch)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    optimize(engine)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(tables.events)).scalar()
    engine.dispose()
    assert stored == total, f"stored {stored} of {total} events"
    return task, task_total, total


def searches(
    tasks: int, end: datetime, spacing: timedelta
) -> dict[str, Callable[[random.Random], tuple[str, dict[str, Any]]]]:
    """Each search of the read API with a generator of random but matching values."""
    start = end - SPAN

    def task_number(rng: random.Random) -> int:
        return rng.randrange(tasks)

    def moment(rng: random.Random) -> datetime:
        return start + (end - start) * rng.random()

    def task_id(rng: random.Random) -> str:
        number = task_number(rng)
        time = start + spacing * number
        return f"{time:%Y%m%dT%H%M%S}-{number:08d}"

    def window(rng: random.Random, hours: float) -> dict[str, str]:
        begin = moment(rng)
        return {"since": begin.isoformat(), "until": (begin + timedelta(hours=hours)).isoformat()}

    return {
        "tasks by accession": lambda r: (
            "/api/v1/tasks",
            {"accession": f"ACC{task_number(r):08d}"},
        ),
        "tasks by patient ID": lambda r: (
            "/api/v1/tasks",
            {"patient_id": f"PAT{r.randrange(PATIENTS):05d}"},
        ),
        "tasks by series UID": lambda r: (
            "/api/v1/tasks",
            {"series_uid": f"1.2.826.0.1.3680043.10.543.7.{task_number(r)}"},
        ),
        "tasks by study UID": lambda r: (
            "/api/v1/tasks",
            {"study_uid": f"1.2.826.0.1.3680043.10.543.8.{task_number(r) // 4}"},
        ),
        "tasks by rule": lambda r: ("/api/v1/tasks", {"rule": r.choice(RULES)}),
        "tasks by target": lambda r: ("/api/v1/tasks", {"target": r.choice(TARGETS)}),
        "tasks by state (error)": lambda r: ("/api/v1/tasks", {"state": "error"}),
        "tasks in 1 hour": lambda r: ("/api/v1/tasks", window(r, 1)),
        "tasks rule+state+day": lambda r: (
            "/api/v1/tasks",
            {"rule": r.choice(RULES), "state": "error", **window(r, 24)},
        ),
        "tasks by rule, page 40": lambda r: (
            "/api/v1/tasks",
            {"rule": r.choice(RULES), "offset": 2000},
        ),
        "series by accession": lambda r: (
            "/api/v1/series",
            {"accession": f"ACC{task_number(r):08d}"},
        ),
        "series by patient ID": lambda r: (
            "/api/v1/series",
            {"patient_id": f"PAT{r.randrange(PATIENTS):05d}"},
        ),
        "series by rule": lambda r: ("/api/v1/series", {"rule": r.choice(RULES)}),
        "series by target+state": lambda r: (
            "/api/v1/series",
            {"target": r.choice(TARGETS), "state": "error"},
        ),
        "events of a task": lambda r: ("/api/v1/events", {"task_id": task_id(r)}),
        "events by kind, 1 day": lambda r: (
            "/api/v1/events",
            {"kind": "dispatch.failed", **window(r, 24)},
        ),
        "events severity>=error": lambda r: ("/api/v1/events", {"severity": "error"}),
        "task detail": lambda r: (f"/api/v1/tasks/{task_id(r)}", {}),
        "task timeline": lambda r: (f"/api/v1/tasks/{task_id(r)}/timeline", {}),
        "statistics, 24 hours": lambda r: (
            "/api/v1/statistics",
            {"bucket": "hour", "until": end.isoformat()},
        ),
        "statistics, 30 days": lambda r: (
            "/api/v1/statistics",
            {"bucket": "day", "until": end.isoformat()},
        ),
        "queues": lambda r: ("/api/v1/queues", {}),
    }


def measure(
    url: str, tasks: int, end: datetime, spacing: timedelta
) -> list[tuple[str, float, float, float]]:
    """(search, median ms, p95 ms, max ms) of each search."""
    rng = random.Random(7)
    results = []
    with api_client(url) as client:
        for name, make in searches(tasks, end, spacing).items():
            path, params = make(rng)
            client.get(path, params=params).raise_for_status()
            times = []
            for _ in range(RUNS):
                path, params = make(rng)
                started = time.perf_counter()
                response = client.get(path, params=params)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            results.append((name, statistics.median(times), p95, times[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--task-events", type=int, default=1_000_000, help="task events to generate"
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    end = datetime.now(UTC).replace(microsecond=0)
    for backend in backends:
        with (
            tempfile.TemporaryDirectory(prefix="bench-bookkeeper-") as tmp,
            database(backend, Path(tmp)) as url,
        ):
            print(f"{backend}: filling with {args.task_events:,} task events")
            started = time.perf_counter()
            tasks, task_total, total = fill(url, args.task_events, end)
            seconds = time.perf_counter() - started
            print(
                f"  {tasks:,} tasks, {task_total:,} task events ({total:,} events) "
                f"in {seconds:.0f} s "
                f"({total / seconds:,.0f} events/s through ingest, batches of {LOAD_BATCH:,})"
            )
            with bookkeeper(Path(tmp), url) as service:
                print(f"  {'search':<26} {'median':>8} {'p95':>8} {'max':>8}  (ms, {RUNS} runs)")
                for name, median, p95, worst in measure(
                    service, tasks, end, task_spacing(args.task_events)
                ):
                    searched = not name.startswith("statistics")
                    verdict = ("ok" if p95 < TARGET_MS else "SLOW") if searched else ""
                    print(f"  {name:<26} {median:8.1f} {p95:8.1f} {worst:8.1f}  {verdict}")


if __name__ == "__main__":
    main()
