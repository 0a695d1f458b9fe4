"""The bookkeeper as a real process: start-up, clean stop, and no event lost or doubled
while it is killed and restarted under load."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from bookkeeper_harness import TOKEN, BookkeeperProcess
from bookkeeper_pipeline import SERVICES, Pipeline
from sqlalchemy.engine import Engine

from mercure.bookkeeper import tables
from mercure.testing.wait import wait_until


@pytest.fixture
def process(tmp_path: Path, database_url: str) -> Iterator[BookkeeperProcess]:
    """An unstarted bookkeeper process on the test's database."""
    bookkeeper = BookkeeperProcess(tmp_path, database_url)
    yield bookkeeper
    bookkeeper.close()


@pytest.mark.slow
def test_service_stops_cleanly_on_sigterm(process: BookkeeperProcess) -> None:
    """After start-up (with migrations) the service answers and exits 0 on SIGTERM."""
    process.start()
    health = httpx.get(process.url + "/health").json()
    assert health["status"] == "ok"
    assert process.signal(signal.SIGTERM) == 0
    assert "bookkeeper stopped" in process.log.read_text()


@pytest.mark.slow
def test_service_keeps_sqlite_in_the_data_folder_by_default(tmp_path: Path) -> None:
    """Without database_url the database is a SQLite file under data_dir/bookkeeper/."""
    bookkeeper = BookkeeperProcess(tmp_path, None)
    try:
        bookkeeper.start()
        assert (tmp_path / "data" / "bookkeeper" / "bookkeeper.sqlite3").is_file()
        assert bookkeeper.signal(signal.SIGTERM) == 0
    finally:
        bookkeeper.close()


@pytest.mark.slow
def test_service_reports_a_busy_port(tmp_path: Path) -> None:
    """A port already in use ends the service with a message naming the port."""
    bookkeeper = BookkeeperProcess(tmp_path, None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", bookkeeper.port))
        taken.listen()
        code = subprocess.run(
            [sys.executable, "-m", "mercure", "bookkeeper", "--config", str(bookkeeper.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert code.returncode != 0
    assert f"cannot listen on 127.0.0.1:{bookkeeper.port}" in code.stderr


def _stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        query = sa.select(tables.events.c.id).where(tables.events.c.service.in_(SERVICES))
        return list(connection.execute(query).scalars())


@pytest.mark.slow
def test_events_arrive_exactly_once_across_a_bookkeeper_crash(
    process: BookkeeperProcess, engine: Engine, tmp_path: Path
) -> None:
    """20 series flow while the bookkeeper is killed (SIGKILL) and restarted: every event of
    five producers (real outboxes and deliverers standing in for the pipeline services,
    which do not exist yet) is stored exactly once, and every task ends in its final state."""
    process.start()
    pipeline = Pipeline(tmp_path / "outbox", process.url, TOKEN)
    pipeline.start()
    try:
        runs = [pipeline.run_series(i, process=i % 3 == 0, fail=i == 7) for i in range(10)]
        wait_until(lambda: _stored_ids(engine), timeout=10, message="first events stored")
        process.signal(signal.SIGKILL)
        runs += [pipeline.run_series(i, process=i % 3 == 0, fail=i == 17) for i in range(10, 20)]
        wait_until(
            lambda: all(d.failures for d in pipeline.deliverers),
            timeout=10,
            message="every deliverer noticed the bookkeeper is down",
        )
        assert len(_stored_ids(engine)) < len(pipeline.emitted)

        process.start()

        expected = sorted(event.id for event in pipeline.emitted)
        wait_until(
            lambda: len(_stored_ids(engine)) >= len(expected),
            timeout=30,
            message="all events stored after the restart",
        )
        assert sorted(_stored_ids(engine)) == expected
        wait_until(lambda: pipeline.pending_segments() == 0, timeout=10)
    finally:
        pipeline.stop()

    with httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        tasks = api.get("/api/v1/tasks", params={"limit": 100}).json()["items"]
        assert {t["task_id"]: t["state"] for t in tasks} == {
            run.task_id: "error" if run.failed else "cleaned" for run in runs
        }
        timeline = api.get(f"/api/v1/tasks/{runs[12].task_id}/timeline").json()
        assert [e["id"] for e in timeline] == [
            e.id for e in runs[12].events if e.kind != "association.closed"
        ]
    assert process.signal(signal.SIGTERM) == 0
