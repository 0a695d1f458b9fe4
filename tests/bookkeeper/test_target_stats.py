"""``GET /api/v1/targets/stats``: delivery per target over a period, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bookkeeper_harness import RunningApp
from sqlalchemy.engine import Engine

from mercure.bookkeeper.ingest import ingest
from mercure.core.events import Event

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def dispatch(kind: str, seconds: float, task: str, target: str, **data: Any) -> Event:
    """A dispatcher event at T0 + ``seconds``."""
    return Event(
        service="dispatcher",
        kind=kind,
        time=T0 + timedelta(seconds=seconds),
        task_id=task,
        severity="error" if kind == "dispatch.failed" and data.get("final") else "info",
        message=str(data.get("reason", "")),
        data={"target": target, **data},
    )


@pytest.fixture
def history(engine: Engine) -> None:
    """pacs: two deliveries (4 s, 10 s), one retried failure; archive: a final failure;
    old: a delivery the day before (outside the period asked for)."""
    ingest(
        engine,
        [
            dispatch("dispatch.begin", 0, "t1", "pacs"),
            dispatch("dispatch.complete", 4, "t1", "pacs", instances=3, bytes=3000),
            dispatch("dispatch.begin", 10, "t2", "pacs"),
            dispatch("dispatch.failed", 11, "t2", "pacs", reason="refused", will_retry=True),
            dispatch("dispatch.begin", 70, "t2", "pacs"),
            dispatch("dispatch.complete", 80, "t2", "pacs", instances=2, bytes=500),
            dispatch("dispatch.begin", 20, "t3", "archive"),
            dispatch("dispatch.failed", 21, "t3", "archive", reason="disk full", final=True),
            dispatch("dispatch.begin", -86400, "t0", "old"),
            dispatch("dispatch.complete", -86399, "t0", "old", instances=1, bytes=1),
        ],
    )


def stats(bookkeeper: RunningApp, **params: str) -> dict[str, Any]:
    """The answer of the endpoint (asserting 200)."""
    response = bookkeeper.client.get("/api/v1/targets/stats", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_delivery_counts_times_and_last_error_per_target(
    history: None, bookkeeper: RunningApp
) -> None:
    """Deliveries, retries, final failures, mean and longest attempt, the newest reason."""
    since, until = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    body = stats(bookkeeper, since=since.isoformat(), until=until.isoformat())
    assert body["truncated"] is False
    by_name = {item["target"]: item for item in body["targets"]}
    assert sorted(by_name) == ["archive", "pacs"]
    pacs, archive = by_name["pacs"], by_name["archive"]
    assert (pacs["delivered"], pacs["retried"], pacs["failed"]) == (2, 1, 0)
    assert (pacs["instances"], pacs["bytes"]) == (5, 3500)
    assert pacs["mean_seconds"] == pytest.approx(7.0)
    assert pacs["max_seconds"] == pytest.approx(10.0)
    assert pacs["last_error"] == "refused"
    assert datetime.fromisoformat(pacs["last_delivered"]) == T0 + timedelta(seconds=80)
    assert (archive["delivered"], archive["failed"], archive["mean_seconds"]) == (0, 1, None)
    assert archive["last_error"] == "disk full"
    assert datetime.fromisoformat(archive["last_error_time"]) == T0 + timedelta(seconds=21)


def test_the_period_selects_the_events(history: None, bookkeeper: RunningApp) -> None:
    """Only events in [since, until) count; the default period is the last 24 hours."""
    day_before = T0 - timedelta(days=1, hours=1)
    body = stats(bookkeeper, since=day_before.isoformat(), until=T0.isoformat())
    assert [item["target"] for item in body["targets"]] == ["old"]
    assert stats(bookkeeper)["targets"] == []  # T0 is long ago


def test_an_empty_period_is_refused(bookkeeper: RunningApp) -> None:
    """since after until is a 422 that says so."""
    response = bookkeeper.client.get(
        "/api/v1/targets/stats",
        params={"since": T0.isoformat(), "until": (T0 - timedelta(1)).isoformat()},
    )
    assert response.status_code == 422
    assert "since must be before until" in response.text
