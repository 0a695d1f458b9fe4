"""The bookkeeper killed while series flow through receiver -> router -> dispatcher, then started
again: every event any service wrote arrives exactly once, and every timeline is complete."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import Event
from mercure.testing.installation import (
    BookkeeperClient,
    MercureProcess,
    OutboxRecorder,
    is_in_order,
    postgres_database,
    write_config,
)
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]

SERIES = 20
BEFORE_OUTAGE = 5
INSTANCES = 3
TIMELINE = [
    "series.received",
    "series.complete",
    "task.created",
    "dispatch.begin",
    "dispatch.complete",
    "task.completed",
]
"""A routed task's timeline, in this order, each kind once."""


@dataclass
class Installation:
    """The running services, the bookkeeper's API and the record of every event written."""

    data: DataFolder
    receiver_port: int
    bookkeeper: MercureProcess
    api: BookkeeperClient
    recorder: OutboxRecorder


@dataclass
class Delivery:
    """What the services wrote against what the bookkeeper stored; true when they match."""

    written: list[Event]
    stored: list[dict[str, Any]]

    def __bool__(self) -> bool:
        return {e.id for e in self.written} == {e["id"] for e in self.stored}

    def __repr__(self) -> str:
        stored = {e["id"] for e in self.stored}
        missing = Counter(e.kind for e in self.written if e.id not in stored)
        written = {e.id for e in self.written}
        extra = Counter(e["kind"] for e in self.stored if e["id"] not in written)
        return f"missing {dict(missing)}, not written {dict(extra)}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The bookkeeper's database: SQLite in the data folder, or a real PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def installation(tmp_path: Path, database_url: str | None) -> Iterator[Installation]:
    """Bookkeeper, receiver, router and dispatcher as separate processes; a folder target."""
    receiver_port, bookkeeper_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        targets={"archive": {"type": "folder", "folder": str(tmp_path / "archive")}},
        rules={
            "ct_route": {"rule": "tags.Modality == 'CT'", "action": "route", "targets": ["archive"]}
        },
        database_url=database_url,
    )
    data = DataFolder(tmp_path / "data")
    recorder = OutboxRecorder(tmp_path / "outbox-record").start()
    bookkeeper = MercureProcess(
        "bookkeeper",
        config,
        listen_port=bookkeeper_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    bookkeeper.env.update(recorder.env())
    api = BookkeeperClient(bookkeeper_port)
    with contextlib.ExitStack() as stack:
        stack.callback(recorder.stop)
        stack.callback(api.close)
        stack.enter_context(bookkeeper)  # stopped last: the others' last events reach it
        services = [
            MercureProcess("receiver", config, listen_port=receiver_port),
            MercureProcess("router", config),
            MercureProcess("dispatcher", config),
        ]
        for service in services:
            service.env.update(recorder.env())
            stack.enter_context(service)
        yield Installation(data, receiver_port, bookkeeper, api, recorder)


def test_events_written_during_an_outage_arrive_exactly_once(
    tmp_path: Path, installation: Installation
) -> None:
    """20 series, 15 of them while the bookkeeper is dead: all events arrive, none twice."""
    data, api = installation.data, installation.api
    series = [
        generate_series(tmp_path / f"series{n}", "tiny", INSTANCES, seed=200 + n)
        for n in range(SERIES)
    ]

    def send(some: list[GeneratedSeries]) -> None:
        for one in some:
            storescu(installation.receiver_port, one.folder, called_aet="MERCURE")

    def delivered(count: int) -> list[Path]:
        done = data.entries(Stage.SUCCESS)
        return done if len(done) >= count else []

    send(series[:BEFORE_OUTAGE])
    wait_until(lambda: delivered(BEFORE_OUTAGE), timeout=20, interval=0.1)
    installation.bookkeeper.stop(graceful=False)  # SIGKILL, by its pid
    send(series[BEFORE_OUTAGE:])
    wait_until(lambda: delivered(SERIES), timeout=30, interval=0.1)
    assert len(data.entries(Stage.ERROR)) == 0
    restarted_at: datetime = utcnow()
    installation.bookkeeper.start()

    def delivery() -> Delivery:
        return Delivery(installation.recorder.events(), api.events())

    wait_until(delivery, timeout=45, interval=0.5, message="every event written is stored")
    stored = api.events()
    duplicates = Counter(e["id"] for e in stored) - Counter({e["id"]: 1 for e in stored})
    assert not duplicates
    # The outage was real: what the pipeline did meanwhile reached the bookkeeper only later.
    created = {e["series_uid"]: e for e in stored if e["kind"] == "task.created"}
    for one in series[BEFORE_OUTAGE:]:
        assert datetime.fromisoformat(created[one.series_uid]["received_at"]) >= restarted_at

    for one in series:
        (task,) = api.tasks(series_uid=one.series_uid)
        assert task["state"] == "success"
        assert [(t["target"], t["state"]) for t in task["targets"]] == [("archive", "complete")]
        kinds = [event["kind"] for event in api.timeline(task["task_id"])]
        assert is_in_order(kinds, TIMELINE), kinds
        assert all(kinds.count(kind) == 1 for kind in TIMELINE), kinds
        (received,) = api.series(series_uid=one.series_uid)
        assert received["instance_count"] == INSTANCES
