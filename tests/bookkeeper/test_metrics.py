"""/metrics: counters, stage latencies computed from events, and the gauges operators alert on,
in the Prometheus text format (parsed with prometheus_client's own parser)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bookkeeper_harness import TOKEN, RunningApp, serve_app
from bookkeeper_pipeline import Pipeline
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app
from mercure.bookkeeper.metrics import MAX_LABEL_VALUES
from mercure.core.events import Event

T0 = datetime(2030, 5, 6, 7, 0, 0, tzinfo=UTC)


def _samples(text: str) -> dict[str, float]:
    """Every sample as ``name{label="value",...}`` -> value (labels sorted by name)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def _scrape(app: RunningApp) -> dict[str, float]:
    response = app.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(response.text)


def _post(app: RunningApp, events: list[Event]) -> None:
    response = app.client.post(
        "/api/v1/events", json={"events": [e.model_dump(mode="json") for e in events]}
    )
    assert response.status_code == 200, response.text


def _at(seconds: float, kind: str, **kwargs: Any) -> Event:
    return Event(time=T0 + timedelta(seconds=seconds), kind=kind, **kwargs)


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    """A data folder with the outboxes of two services: the router's with a two-minute-old
    undelivered segment and a set-aside one, the dispatcher's empty."""
    router = tmp_path / "data" / "outbox" / "router@host"
    router.mkdir(parents=True)
    old = int((time.time() - 120) * 1e6)
    (router / f"{old:020d}.jsonl").write_text("x" * 1000)
    (router / f"{old + 1:020d}.rejected").write_text("{}\n")
    (router / "dropped.json").write_text("{}")
    (tmp_path / "data" / "outbox" / "dispatcher@host").mkdir()
    return tmp_path / "data"


@pytest.fixture
def metered(engine: Engine, data_folder: Path) -> Iterator[RunningApp]:
    """A bookkeeper with fixed queue depths and the data folder above."""
    depths = {"incoming": 3, "outgoing": 1}
    app = create_app(engine, api_key=TOKEN, queue_depths=lambda: depths, data_folder=data_folder)
    yield from serve_app(app)


def test_metrics_count_events_tasks_and_queues(metered: RunningApp, tmp_path: Path) -> None:
    """Stored, duplicate and dropped events, tasks by state and queue depths are exposed."""
    pipeline = Pipeline(tmp_path / "outbox")
    pipeline.run_series(0)
    pipeline.run_series(1, fail=True)
    pipeline.stop()
    dropped = Event(service="router", kind="outbox.dropped", severity="warning", data={"events": 7})
    events = [*pipeline.emitted, dropped]
    _post(metered, events)
    _post(metered, events[:3])

    samples = _scrape(metered)

    stored = 'mercure_bookkeeper_events_stored_total{kind="task.failed",service="dispatcher"}'
    assert samples[stored] == 1
    assert samples["mercure_bookkeeper_events_duplicate_total"] == 3
    assert samples['mercure_bookkeeper_batches_total{result="stored"}'] == 2
    assert samples['mercure_bookkeeper_batches_total{result="failed"}'] == 0
    assert samples["mercure_bookkeeper_ingest_seconds_count"] == 2
    assert samples['mercure_outbox_dropped_events_total{service="router"}'] == 7
    assert samples['mercure_tasks{state="cleaned"}'] == 1
    assert samples['mercure_tasks{state="error"}'] == 1
    assert samples['mercure_queue_depth{stage="incoming"}'] == 3
    assert samples["mercure_bookkeeper_database_up"] == 1
    assert samples['mercure_tasks_failed_total{fail_stage="dispatch"}'] == 1
    assert samples['mercure_dispatch_attempts_total{result="failed",target="archive"}'] == 1
    assert samples['mercure_dispatch_attempts_total{result="complete",target="pacs"}'] == 1


def test_stage_latencies_are_computed_from_the_events(metered: RunningApp) -> None:
    """Received -> routed, a module run, a dispatch attempt and received -> completed, each
    observed once with the span between its events (the receipt from the series row)."""
    ids = {"task_id": "t-1", "series_uid": "1.2.3.4"}
    _post(
        metered,
        [
            _at(
                0,
                "series.received",
                service="router",
                series_uid="1.2.3.4",
                data={"instances": 2, "last_received": (T0 - timedelta(seconds=5)).isoformat()},
            ),
            _at(60, "task.created", service="router", data={"stage": "processing"}, **ids),
        ],
    )
    started = (T0 + timedelta(seconds=70)).isoformat()
    _post(
        metered,
        [
            _at(100, "task.process.log", service="processor", data={"started_at": started}, **ids),
            _at(101, "dispatch.begin", service="dispatcher", data={"target": "pacs"}, **ids),
            _at(104, "dispatch.complete", service="dispatcher", data={"target": "pacs"}, **ids),
            _at(105, "task.completed", service="dispatcher", **ids),
        ],
    )

    samples = _scrape(metered)

    for stage, seconds in (
        ("received_to_routed", 65),
        ("processing", 30),
        ("dispatch", 3),
        ("received_to_completed", 110),
    ):
        assert samples[f'mercure_stage_duration_seconds_count{{stage="{stage}"}}'] == 1, stage
        assert samples[f'mercure_stage_duration_seconds_sum{{stage="{stage}"}}'] == seconds, stage
    assert samples['mercure_stage_duration_seconds_bucket{le="120.0",stage="dispatch"}'] == 1


def test_dispatch_failures_per_target_tell_retries_from_final(metered: RunningApp) -> None:
    """dispatch.failed counts as retrying or failed per target; a dispatch's time is observed
    for failed attempts too."""
    ids = {"task_id": "t-2", "service": "dispatcher"}
    events = [
        _at(0, "dispatch.begin", data={"target": "pacs"}, **ids),
        _at(2, "dispatch.failed", data={"target": "pacs", "will_retry": True}, **ids),
        _at(60, "dispatch.begin", data={"target": "pacs"}, **ids),
        _at(61, "dispatch.failed", data={"target": "pacs", "final": True}, **ids),
    ]
    _post(metered, events)
    samples = _scrape(metered)
    assert samples['mercure_dispatch_attempts_total{result="retrying",target="pacs"}'] == 1
    assert samples['mercure_dispatch_attempts_total{result="failed",target="pacs"}'] == 1
    assert samples['mercure_stage_duration_seconds_sum{stage="dispatch"}'] == 3


def test_data_folder_and_outbox_backlog_are_gauges(metered: RunningApp) -> None:
    """Free disk of the data folder and, per service, undelivered outbox segments, their
    bytes, the age of the oldest and the files set aside."""
    samples = _scrape(metered)
    assert samples["mercure_data_folder_free_bytes"] > 0
    assert samples["mercure_data_folder_size_bytes"] >= samples["mercure_data_folder_free_bytes"]
    assert samples['mercure_outbox_backlog_segments{service="router"}'] == 1
    assert samples['mercure_outbox_backlog_bytes{service="router"}'] == 1000
    assert samples['mercure_outbox_oldest_seconds{service="router"}'] >= 120
    assert samples['mercure_outbox_set_aside_files{reason="rejected",service="router"}'] == 1
    assert samples['mercure_outbox_backlog_segments{service="dispatcher"}'] == 0
    assert samples['mercure_outbox_oldest_seconds{service="dispatcher"}'] == 0


def test_label_values_from_events_are_capped(metered: RunningApp) -> None:
    """However many targets events name, the target label takes a bounded number of values."""
    events = [
        Event(
            service="dispatcher",
            kind="dispatch.complete",
            task_id=f"t{n}",
            data={"target": f"x{n}"},
        )
        for n in range(MAX_LABEL_VALUES + 50)
    ]
    _post(metered, events)
    samples = _scrape(metered)
    targets = {key for key in samples if key.startswith("mercure_dispatch_attempts_total")}
    assert len(targets) == MAX_LABEL_VALUES + 1
    assert samples['mercure_dispatch_attempts_total{result="complete",target="other"}'] == 50
