"""/metrics: the Prometheus text format with counters and queue depths."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from bookkeeper_harness import RunningApp, serve_app
from bookkeeper_pipeline import Pipeline
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app
from mercure.core.events import Event

_SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\})? (\S+)$')


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ ", line), line
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[line.rsplit(" ", 1)[0]] = float(match.group(5))
    return samples


@pytest.fixture
def with_queues(engine: Engine) -> Iterator[RunningApp]:
    """A bookkeeper that reports fixed data-folder queue depths."""
    depths = {"incoming": 3, "outgoing": 1}
    yield from serve_app(create_app(engine, api_key="test-token-3f9a", queue_depths=lambda: depths))


def test_metrics_count_events_tasks_and_queues(with_queues: RunningApp, tmp_path: Path) -> None:
    """Stored, duplicate and dropped events, tasks by state and queue depths are exposed."""
    pipeline = Pipeline(tmp_path / "outbox")
    pipeline.run_series(0)
    pipeline.run_series(1, fail=True)
    pipeline.stop()
    dropped = Event(service="router", kind="outbox.dropped", severity="warning", data={"events": 7})
    events = [e.model_dump(mode="json") for e in [*pipeline.emitted, dropped]]
    client = with_queues.client
    client.post("/api/v1/events", json={"events": events})
    client.post("/api/v1/events", json={"events": events[:3]})

    response = client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    assert (
        samples['mercure_bookkeeper_events_stored_total{service="dispatcher",kind="task.failed"}']
        == 1
    )
    assert samples["mercure_bookkeeper_events_duplicate_total"] == 3
    assert samples['mercure_bookkeeper_batches_total{result="stored"}'] == 2
    assert samples['mercure_outbox_dropped_events_total{service="router"}'] == 7
    assert samples['mercure_tasks{state="cleaned"}'] == 1
    assert samples['mercure_tasks{state="error"}'] == 1
    assert samples['mercure_queue_depth{stage="incoming"}'] == 3
    assert samples["mercure_bookkeeper_database_up"] == 1
