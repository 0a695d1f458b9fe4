"""Event ingest of the bookkeeper, on SQLite and on PostgreSQL, through the real service.

``mercure bookkeeper`` runs as a subprocess (uvicorn, FastAPI validation, SQL) and receives
synthetic pipeline events (the contract's mix: reception, task created with task.json,
processing with a log, dispatch per target, completion, cleaning) in three ways:

- ``post x1``: one client posting batches of ``--batch`` back to back;
- ``post x4``: four clients at once (the services deliver in parallel);
- ``deliverer``: an :class:`OutboxDeliverer` draining a filled outbox (the whole client path);
- ``re-post``: the same batches again (a retry storm after an outage: all duplicates).

    .venv/bin/python bench/bench_bookkeeper_ingest.py [--backend both] [--events 50000]

Target: at least 5,000 events/s on both backends with batches of 500.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from mercure.core.delivery import OutboxDeliverer
from mercure.core.events import Event, EventClient, Outbox
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until

TOKEN = "bench-token"
RULES = [f"rule_{n:02d}" for n in range(20)]
TARGETS = [f"target_{n}" for n in range(10)]
PATIENTS = 5000


# --- synthetic events ----------------------------------------------------------------------
def task_events(task: int, time: datetime, rng: random.Random) -> list[Event]:
    """The events of one series and its task: 1 reception + 10 task events.

    5 % of the tasks fail at dispatch, 2 % are still waiting in outgoing/.
    """
    task_id = f"{time:%Y%m%dT%H%M%S}-{task:08d}"
    series_uid = f"1.2.826.0.1.3680043.10.543.7.{task}"
    study_uid = f"1.2.826.0.1.3680043.10.543.8.{task // 4}"
    patient, accession = f"PAT{task % PATIENTS:05d}", f"ACC{task:08d}"
    rule = RULES[task % len(RULES)]
    targets = [TARGETS[task % len(TARGETS)], TARGETS[(task + 3) % len(TARGETS)]]
    fate = rng.random()
    tick = [time]

    def at() -> datetime:
        tick[0] += timedelta(milliseconds=rng.randint(50, 3000))
        return tick[0]

    def document(status: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": task_id,
            "info": {
                "action": "both",
                "uid": series_uid,
                "uid_type": "series",
                "triggered_rules": {rule: True},
                "applied_rule": rule,
                "mrn": patient,
                "acc": accession,
                "sender_aet": "CT01",
            },
            "dispatch": {"target_name": targets, "status": status},
            "process": [{"module_name": "anonymizer", "settings": {"level": 2}}],
        }

    on_task = {"task_id": task_id, "series_uid": series_uid, "study_uid": study_uid}
    tags = {
        "PatientID": patient,
        "AccessionNumber": accession,
        "Modality": "CT" if task % 3 else "MR",
        "SeriesDescription": f"series {task % 7}",
        "StudyDescription": "CHEST",
        "SenderAET": "CT01",
        "ReceiverAET": "MERCURE",
        "SenderAddress": "10.0.0.17",
    }
    events = [
        Event(
            time=at(),
            service="receiver",
            kind="series.received",
            series_uid=series_uid,
            study_uid=study_uid,
            data={"instances": rng.randint(1, 400), "tags": tags},
        ),
        Event(
            time=at(),
            service="router",
            kind="task.created",
            data={"stage": "processing", "task": document({})},
            **on_task,
        ),
        Event(
            time=at(),
            service="processor",
            kind="process.begin",
            data={"module": "anonymizer"},
            **on_task,
        ),
        Event(
            time=at(),
            service="processor",
            kind="process.end",
            data={"module": "anonymizer", "exit_code": 0, "log": "done\n" * 5, "stage": "outgoing"},
            **on_task,
        ),
    ]
    for target in targets:
        events.append(
            Event(
                time=at(),
                service="dispatcher",
                kind="dispatch.begin",
                data={"target": target},
                **on_task,
            )
        )
    if fate < 0.02:
        events += [
            Event(
                time=at(),
                service="dispatcher",
                kind="task.update",
                data={"task": document({})},
                **on_task,
            )
        ]
        events += [
            Event(
                time=at(),
                service="dispatcher",
                kind="dispatch.begin",
                data={"target": targets[0]},
                **on_task,
            )
        ]
        events += [
            Event(time=at(), service="router", kind="rule.error", severity="warning", **on_task)
        ]
        return events
    if fate < 0.07:
        status = {t: {"state": "error"} for t in targets}
        for target in targets:
            events.append(
                Event(
                    time=at(),
                    service="dispatcher",
                    kind="dispatch.failed",
                    severity="error",
                    message="association rejected",
                    data={"target": target, "will_retry": False},
                    **on_task,
                )
            )
        events.append(
            Event(
                time=at(),
                service="dispatcher",
                kind="task.failed",
                severity="error",
                message="association rejected",
                data={"fail_stage": "dispatch", "task": document(status)},
                **on_task,
            )
        )
        events.append(
            Event(
                time=at(),
                service="webgui",
                kind="task.requeued",
                data={"stage": "error"},
                **on_task,
            )
        )
        return events
    status = {t: {"state": "complete"} for t in targets}
    for target in targets:
        events.append(
            Event(
                time=at(),
                service="dispatcher",
                kind="dispatch.complete",
                data={"target": target, "instances": 100},
                **on_task,
            )
        )
    events.append(
        Event(
            time=at(),
            service="dispatcher",
            kind="task.completed",
            data={"task": document(status)},
            **on_task,
        )
    )
    events.append(
        Event(
            time=at(),
            service="cleaner",
            kind="task.cleaned",
            data={"reason": "retention"},
            **on_task,
        )
    )
    return events


def synthetic_events(count: int, *, first_task: int = 0, seed: int = 1) -> list[Event]:
    """At least ``count`` events of consecutive tasks, ending about now."""
    rng = random.Random(seed + first_task)
    start = datetime.now(UTC) - timedelta(hours=1)
    events: list[Event] = []
    task = first_task
    while len(events) < count:
        events += task_events(task, start + timedelta(seconds=task - first_task), rng)
        task += 1
    return events[:count]


def batches_of(events: list[Event], size: int) -> list[bytes]:
    """Request bodies of ``size`` events each."""
    return [
        b'{"events":['
        + b",".join(e.model_dump_json().encode() for e in events[i : i + size])
        + b"]}"
        for i in range(0, len(events), size)
    ]


# --- databases and the service ------------------------------------------------------------
def postgres_user() -> str:
    """A PostgreSQL role that can create databases on 127.0.0.1 (postgres or root)."""
    for user in ("postgres", "root"):
        conninfo = f"host=127.0.0.1 user={user} dbname=postgres"
        with (
            contextlib.suppress(psycopg.OperationalError),
            psycopg.connect(conninfo, connect_timeout=3),
        ):
            return user
    raise SystemExit("PostgreSQL is not reachable on 127.0.0.1:5432 (start it: pg_ctlcluster)")


@contextlib.contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """A new empty database URL; a PostgreSQL database is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bookkeeper.sqlite3'}"
        return
    user, name = postgres_user(), f"mercure_bench_{secrets.token_hex(4)}"
    admin = f"host=127.0.0.1 user={user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def bookkeeper(folder: Path, database_url: str) -> Iterator[str]:
    """``mercure bookkeeper`` in a subprocess; yields its URL."""
    port = free_port()
    config = folder / "mercure.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(folder / "data"),
                "logging": {"level": "WARNING"},
                "bookkeeper": {"port": port, "api_key": TOKEN, "database_url": database_url},
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mercure", "bookkeeper", "--config", str(config)]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/health", timeout=1).status_code == 200,
            timeout=60,
            interval=0.1,
            ignore=(httpx.HTTPError,),
        )
        yield url
    finally:
        process.terminate()
        process.wait(30)


# --- measurements -------------------------------------------------------------------------
def api_client(url: str) -> httpx.Client:
    """A client with the token and TCP_NODELAY, as the outbox deliverer has."""
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
        transport=httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]),
    )


def post_all(url: str, bodies: list[bytes]) -> int:
    """Post every body; the number of events the bookkeeper stored."""
    stored = 0
    with api_client(url) as client:
        for body in bodies:
            response = client.post(
                "/api/v1/events", content=body, headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()
            stored += response.json()["stored"]
    return stored


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>9,.0f} events/s"


def run_backend(backend: str, events: int, batch: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-bookkeeper-") as tmp:
        folder = Path(tmp)
        with database(backend, folder) as url, bookkeeper(folder, url) as service:
            # Warm-up: first connections, compiled statements.
            post_all(service, batches_of(synthetic_events(2000, first_task=10_000_000), batch))

            bodies = batches_of(synthetic_events(events), batch)
            started = time.perf_counter()
            stored = post_all(service, bodies)
            results["post x1"] = stored / (time.perf_counter() - started)
            assert stored == events, f"stored {stored} of {events}"

            parts = [
                batches_of(synthetic_events(events // 4, first_task=1_000_000 * (n + 1)), batch)
                for n in range(4)
            ]
            counts = [0] * 4

            def worker(n: int) -> None:
                counts[n] = post_all(service, parts[n])

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            results["post x4"] = sum(counts) / (time.perf_counter() - started)

            outbox_events = synthetic_events(events, first_task=5_000_000)
            client = EventClient(Outbox(folder / "outbox", "bench@host"), "bench", "host")
            for event in outbox_events:
                client.outbox.append(event)
            deliverer = OutboxDeliverer(client, service, TOKEN, batch_size=batch)
            started = time.perf_counter()
            assert deliverer.deliver_pending()
            results["deliverer"] = deliverer.delivered / (time.perf_counter() - started)
            client.outbox.close()

            started = time.perf_counter()
            assert post_all(service, bodies) == 0
            results["re-post"] = len(bodies) * batch / (time.perf_counter() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--events", type=int, default=50_000, help="events per measurement")
    parser.add_argument("--batch", type=int, default=500, help="events per request")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"bookkeeper ingest: {args.events:,} events per measurement, batches of {args.batch}")
    print(f"machine: {os.cpu_count()} CPUs")
    for backend in backends:
        for name, value in run_backend(backend, args.events, args.batch).items():
            verdict = "" if name == "re-post" else ("  ok" if value >= 5000 else "  BELOW 5,000")
            print(f"  {backend:<10} {name:<10} {value:>9,.0f} events/s{verdict}")


if __name__ == "__main__":
    main()
