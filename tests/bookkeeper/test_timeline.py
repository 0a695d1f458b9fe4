"""A task's timeline, throughput statistics and queue depths."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bookkeeper_harness import RunningApp
from bookkeeper_pipeline import Pipeline, event_at, hours

from mercure.core.events import Event


def _post(app: RunningApp, events: list[Event]) -> None:
    response = app.client.post(
        "/api/v1/events", json={"events": [e.model_dump(mode="json") for e in events]}
    )
    assert response.status_code == 200, response.text


def test_timeline_runs_from_reception_to_cleaning(bookkeeper: RunningApp, tmp_path: Path) -> None:
    """The timeline lists the series' reception and every task event, oldest first."""
    pipeline = Pipeline(tmp_path / "outbox")
    run = pipeline.run_series(0, process=True)
    other = pipeline.run_series(1)
    pipeline.stop()
    _post(bookkeeper, pipeline.emitted[::-1])

    timeline = bookkeeper.client.get(f"/api/v1/tasks/{run.task_id}/timeline").json()

    assert [event["kind"] for event in timeline] == [
        "series.received",
        "task.created",
        "process.begin",
        "process.end",
        "dispatch.begin",
        "dispatch.complete",
        "task.completed",
        "task.cleaned",
    ]
    assert {event["id"] for event in timeline}.isdisjoint({e.id for e in other.events})
    assert timeline[1]["data"]["stage"] == "processing"
    assert "task" not in timeline[1]["data"]


def test_timeline_of_a_study_task_includes_its_series(bookkeeper: RunningApp) -> None:
    """A study-level task's timeline shows the reception of each series of its study."""
    study = "1.2.3.4"
    events = [
        Event(
            service="receiver", kind="series.received", series_uid=f"{study}.{n}", study_uid=study
        )
        for n in (1, 2)
    ]
    events.append(
        Event(
            service="router",
            kind="task.created",
            task_id="study-task",
            study_uid=study,
            data={"task": {"id": "study-task", "info": {"uid": study, "uid_type": "study"}}},
        )
    )
    _post(bookkeeper, events)
    timeline = bookkeeper.client.get("/api/v1/tasks/study-task/timeline").json()
    assert [e["kind"] for e in timeline] == ["series.received", "series.received", "task.created"]


def test_statistics_count_per_hour_and_day(bookkeeper: RunningApp) -> None:
    """Counts land in their UTC hour and day; empty hours are listed with zeros."""
    base = datetime(2030, 5, 1, 10, 0, tzinfo=UTC)
    events = [
        event_at(base + hours(0.1), "series.received", series_uid="s1", data={"instances": 5}),
        event_at(base + hours(0.2), "task.created", task_id="t1"),
        event_at(
            base + hours(0.3),
            "dispatch.complete",
            task_id="t1",
            data={"target": "a", "instances": 5},
        ),
        event_at(base + hours(2.5), "series.received", series_uid="s2", data={"instances": 2}),
        event_at(base + hours(2.6), "task.failed", task_id="t2", severity="error"),
        event_at(base + hours(26), "task.completed", task_id="t1"),
    ]
    _post(bookkeeper, events)

    hourly = bookkeeper.client.get(
        "/api/v1/statistics",
        params={
            "bucket": "hour",
            "since": base.isoformat(),
            "until": (base + hours(4)).isoformat(),
        },
    ).json()["buckets"]
    assert [b["start"] for b in hourly] == [
        f"2030-05-01T{h}:00:00Z" for h in ("10", "11", "12", "13")
    ]
    assert [b["series_received"] for b in hourly] == [1, 0, 1, 0]
    assert [b["instances_received"] for b in hourly] == [5, 0, 2, 0]
    assert [b["tasks_created"] for b in hourly] == [1, 0, 0, 0]
    assert [b["dispatched"] for b in hourly] == [1, 0, 0, 0]
    assert [b["instances_dispatched"] for b in hourly] == [5, 0, 0, 0]
    assert [b["tasks_failed"] for b in hourly] == [0, 0, 1, 0]
    assert [b["errors"] for b in hourly] == [0, 0, 1, 0]

    daily = bookkeeper.client.get(
        "/api/v1/statistics",
        params={
            "bucket": "day",
            "since": base.isoformat(),
            "until": (base + hours(38)).isoformat(),
        },
    ).json()["buckets"]
    assert [(b["start"][:10], b["series_received"], b["tasks_completed"]) for b in daily] == [
        ("2030-05-01", 2, 0),
        ("2030-05-02", 0, 1),
    ]


def test_statistics_refuse_too_many_buckets(bookkeeper: RunningApp) -> None:
    """An hourly range of years is refused instead of answered slowly."""
    response = bookkeeper.client.get(
        "/api/v1/statistics",
        params={"bucket": "hour", "since": "2000-01-01T00:00:00Z", "until": "2030-01-01T00:00:00Z"},
    )
    assert response.status_code == 422


def test_queues_count_tasks_by_state(bookkeeper: RunningApp, tmp_path: Path) -> None:
    """The queue view counts tasks by their current state."""
    pipeline = Pipeline(tmp_path / "outbox")
    for index in range(5):
        pipeline.run_series(index, fail=index == 4)
    pipeline.stop()
    _post(bookkeeper, pipeline.emitted)
    queues = bookkeeper.client.get("/api/v1/queues").json()
    assert queues["tasks_by_state"] == {"cleaned": 4, "error": 1}
