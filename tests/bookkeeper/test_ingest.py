"""Storing events: idempotent batches and the projections into series and tasks."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import sqlalchemy as sa
from bookkeeper_harness import RunningApp
from bookkeeper_pipeline import Pipeline, event_at, hours
from sqlalchemy.engine import Engine

from mercure.bookkeeper import tables
from mercure.bookkeeper.ingest import ingest
from mercure.core.events import Event


def _count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _payload(events: list[Event]) -> dict[str, object]:
    return {"events": [event.model_dump(mode="json") for event in events]}


def _recorded(tmp_path: Path, series: int) -> list[Event]:
    pipeline = Pipeline(tmp_path / "outbox")
    for index in range(series):
        pipeline.run_series(index, process=index % 2 == 0, fail=index % 5 == 4)
    pipeline.stop()
    return pipeline.emitted


def test_batch_sent_twice_is_stored_once(
    bookkeeper: RunningApp, engine: Engine, tmp_path: Path
) -> None:
    """A re-sent batch of 500 events stores nothing new and changes no projection."""
    events = _recorded(tmp_path, 80)
    batch = events[:500]
    first = bookkeeper.client.post("/api/v1/events", json=_payload(batch))
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 500, "duplicates": 0}
    versions = _count(engine, tables.task_versions)
    series = bookkeeper.client.get("/api/v1/series", params={"limit": 1000}).json()["items"]
    # One fixed window for both reads: the default one moves with the clock (across an hour).
    window = bookkeeper.client.get("/api/v1/statistics").json()
    bounds = {"since": window["since"], "until": window["until"]}
    statistics = window["buckets"]
    assert sum(bucket["tasks_created"] for bucket in statistics) > 0

    second = bookkeeper.client.post("/api/v1/events", json=_payload(batch))

    assert second.json() == {"stored": 0, "duplicates": 500}
    assert _count(engine, tables.events) == 500
    assert _count(engine, tables.task_versions) == versions
    again = bookkeeper.client.get("/api/v1/series", params={"limit": 1000}).json()["items"]
    assert again == series
    assert (
        bookkeeper.client.get("/api/v1/statistics", params=bounds).json()["buckets"] == statistics
    )


def test_duplicate_ids_inside_one_batch_count_once(engine: Engine) -> None:
    """The same event twice in one batch is stored once, and its instances counted once."""
    event = Event(
        service="receiver", kind="series.received", series_uid="1.2.3", data={"instances": 4}
    )
    result = ingest(engine, [event, event])
    assert (result.stored, result.duplicates) == (1, 1)
    with engine.connect() as connection:
        count = connection.execute(sa.select(tables.series.c.instance_count)).scalar_one()
    assert count == 4


def test_task_state_does_not_depend_on_delivery_order(engine: Engine, tmp_path: Path) -> None:
    """Events delivered shuffled, in small batches, give the same task as in order."""
    events = _recorded(tmp_path, 10)
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    for start in range(0, len(shuffled), 3):
        ingest(engine, shuffled[start : start + 3])
    with engine.connect() as connection:
        rows = {row.task_id: row for row in connection.execute(sa.select(tables.tasks)).fetchall()}
        targets = {
            row.task_id: (row.target, row.state)
            for row in connection.execute(sa.select(tables.task_targets))
        }
    assert len(rows) == 10
    for index in range(10):
        task = rows[f"task-{index:04d}"]
        failed = index % 5 == 4
        assert task.state == ("error" if failed else "cleaned")
        assert task.action == ("both" if index % 2 == 0 else "route")
        assert task.accession == f"ACC{index:04d}"
        assert task.patient_id == f"PAT{index % 5}"
        assert (task.fail_reason is not None) == failed
        assert targets[task.task_id][1] == ("error" if failed else "complete")


def test_every_task_json_version_is_kept(bookkeeper: RunningApp, tmp_path: Path) -> None:
    """Each event carrying data.task adds a version; the API lists them oldest first."""
    events = _recorded(tmp_path, 1)
    bookkeeper.client.post("/api/v1/events", json=_payload(events))
    versions = bookkeeper.client.get("/api/v1/tasks/task-0000/versions").json()
    assert [v["kind"] for v in versions] == ["task.created", "task.completed"]
    assert versions[0]["document"]["dispatch"]["status"] == {}
    assert versions[1]["document"]["dispatch"]["status"]["pacs"]["state"] == "complete"
    detail = bookkeeper.client.get("/api/v1/tasks/task-0000").json()
    assert detail["task"]["version_count"] == 2
    assert len(detail["versions"]) == 2


def test_series_counts_add_up_over_several_receptions(engine: Engine) -> None:
    """Two receptions of one series add their instances; first/last arrival span both."""
    start = event_at(
        Event(service="x", kind="k").time - hours(2),
        "series.received",
        series_uid="1.2.3",
        data={"instances": 5, "tags": {"Modality": "CT", "PatientID": "P"}},
    )
    later = event_at(
        start.time + hours(1), "series.received", series_uid="1.2.3", data={"instances": 2}
    )
    ingest(engine, [later])
    ingest(engine, [start])
    with engine.connect() as connection:
        row = connection.execute(sa.select(tables.series)).one()
    assert row.instance_count == 7
    assert (row.first_received, row.last_received) == (start.time, later.time)
    assert (row.modality, row.patient_id) == ("CT", "P")


def test_processing_log_and_result_are_kept_with_the_task(
    bookkeeper: RunningApp, engine: Engine, tmp_path: Path
) -> None:
    """process.end stores the module's log and result.json; the event row keeps neither."""
    events = _recorded(tmp_path, 1)
    bookkeeper.client.post("/api/v1/events", json=_payload(events))
    run = bookkeeper.client.get("/api/v1/tasks/task-0000").json()["processing"]
    assert len(run) == 1
    assert run[0]["module"] == "anonymizer"
    assert run[0]["success"] is True
    assert run[0]["log"] == "anonymized 3 instances\n"
    assert run[0]["result"] == {"findings": 0}
    with engine.connect() as connection:
        data = connection.execute(
            sa.select(tables.events.c.data).where(tables.events.c.kind == "process.end")
        ).scalar_one()
    assert "log" not in data
    assert data["module"] == "anonymizer"


def test_audit_events_fill_the_audit_log(bookkeeper: RunningApp) -> None:
    """audit.<action> events become audit entries searchable by user and action."""
    events = [
        Event(
            service="webgui",
            kind="audit.rule.saved",
            message="rule ct_rule changed",
            data={"user": "alice", "object": "ct_rule", "remote_address": "10.0.0.5"},
        ),
        Event(service="webgui", kind="audit.login", data={"user": "bob"}),
    ]
    bookkeeper.client.post("/api/v1/events", json=_payload(events))
    entries = bookkeeper.client.get("/api/v1/audit", params={"user": "alice"}).json()["items"]
    assert [(e["action"], e["object"], e["remote_address"]) for e in entries] == [
        ("rule.saved", "ct_rule", "10.0.0.5")
    ]
    logins = bookkeeper.client.get("/api/v1/audit", params={"action": "login"}).json()["items"]
    assert [e["user"] for e in logins] == ["bob"]


def test_nul_characters_do_not_break_a_batch(bookkeeper: RunningApp) -> None:
    """A NUL in a message or data (which PostgreSQL text refuses) is stored replaced."""
    event = Event(service="x\x00", kind="rule.error", message="bad\x00rule", data={"v": "a\x00b"})
    response = bookkeeper.client.post("/api/v1/events", json=_payload([event]))
    assert response.status_code == 200, response.text
    stored = bookkeeper.client.get("/api/v1/events").json()["items"][0]
    assert stored["message"] == "bad\ufffdrule"
    assert stored["data"]["v"] == "a\x00b"


def test_malformed_batch_is_refused_with_422(bookkeeper: RunningApp) -> None:
    """An event without service or kind makes the whole batch a client error."""
    response = bookkeeper.client.post("/api/v1/events", json={"events": [{"kind": "x"}]})
    assert response.status_code == 422


def test_processor_names_and_dispatch_finality_are_understood(engine: Engine) -> None:
    """task.process.* events and dispatch.failed's `final` flag update task and targets."""
    clock = Event(service="x", kind="k").time
    events = [
        event_at(clock, "task.process.begin", task_id="t", service="processor"),
        event_at(
            clock + hours(0.1),
            "task.process.log",
            task_id="t",
            service="processor",
            data={"module": "seg", "exit_code": 3, "log": "boom\n"},
        ),
        event_at(clock + hours(0.2), "task.process.error", task_id="t", message="module failed"),
        event_at(clock, "dispatch.failed", task_id="u", data={"target": "a", "final": False}),
        event_at(clock, "dispatch.failed", task_id="u", data={"target": "b", "final": True}),
    ]
    ingest(engine, events)
    with engine.connect() as connection:
        tasks = {row.task_id: row for row in connection.execute(sa.select(tables.tasks))}
        run = connection.execute(sa.select(tables.processing)).one()
        query = sa.select(tables.task_targets.c.target, tables.task_targets.c.state)
        targets = {target: state for target, state in connection.execute(query)}
    assert (tasks["t"].state, tasks["t"].fail_reason) == ("error", "module failed")
    assert (run.module, run.exit_code, run.success, run.log) == ("seg", 3, False, "boom\n")
    assert targets == {"a": "retrying", "b": "error"}


def test_time_without_zone_counts_as_utc(bookkeeper: RunningApp) -> None:
    """An event time sent without a zone is stored and returned as that UTC time."""
    event = Event(service="script", kind="rule.error").model_dump(mode="json")
    event["time"] = "2030-06-01T12:30:00"
    bookkeeper.client.post("/api/v1/events", json={"events": [event]})
    stored = bookkeeper.client.get("/api/v1/events").json()["items"][0]
    assert stored["time"] == "2030-06-01T12:30:00Z"


def test_concurrent_overlapping_batches_store_each_event_once(
    engine: Engine, tmp_path: Path
) -> None:
    """Four writers racing with the same events in different orders store them once."""
    events = _recorded(tmp_path, 30)
    orders = [events[:], events[::-1], events[100:] + events[:100], events[50:] + events[:50]]
    results: list[int] = []

    def write(order: list[Event]) -> None:
        results.append(
            sum(ingest(engine, order[i : i + 100]).stored for i in range(0, len(order), 100))
        )

    threads = [threading.Thread(target=write, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == len(events)
    assert _count(engine, tables.events) == len(events)
    with engine.connect() as connection:
        instances = connection.execute(sa.select(sa.func.sum(tables.series.c.instance_count)))
        versions = _count(engine, tables.task_versions)
        assert instances.scalar() == 3 * 30
    assert versions == sum(1 for e in events if "task" in e.data)


def test_secrets_in_posted_events_are_not_stored_or_answered(
    bookkeeper: RunningApp, engine: Engine
) -> None:
    """An event that still carries a known secret or an echoed credential (an older sender) is
    stored and answered scrubbed: the bookkeeper's own defence in depth."""
    from mercure.core.masking import register_secret

    register_secret("bookkeeper-side-secret-55")
    event = Event(
        service="dispatcher",
        kind="task.failed",
        task_id="t-leaky",
        severity="error",
        message="pacs: HTTP 500: bookkeeper-side-secret-55",
        data={
            "reason": "peer echoed Authorization: Bearer abcdefgh12345678",
            "task": {"id": "t-leaky", "info": {"action": "route", "uid": "1.2.3"}},
        },
    )
    answer = bookkeeper.client.post("/api/v1/events", json=_payload([event]))
    assert answer.status_code == 200, answer.text
    stored = bookkeeper.client.get("/api/v1/events", params={"task_id": "t-leaky"}).text
    task = bookkeeper.client.get("/api/v1/tasks/t-leaky").text
    with engine.connect() as connection:
        rows = str(connection.execute(sa.select(tables.events)).fetchall())
    for text in (stored, task, rows):
        assert "bookkeeper-side-secret-55" not in text and "abcdefgh12345678" not in text
    assert "pacs: HTTP 500: ***" in stored


def test_a_rejected_instance_is_an_error_task_with_its_reason(bookkeeper: RunningApp) -> None:
    """instance.rejected, also as older receivers sent it (reason only in the message), makes
    an error task of stage "receive" that a search for errors finds."""
    old_style = Event(
        service="receiver",
        kind="instance.rejected",
        severity="error",
        task_id="t-old",
        message="instance from MOD kept in error/t-old: SeriesInstanceUID is missing",
    )
    new_style = Event(
        service="receiver",
        kind="instance.rejected",
        severity="error",
        task_id="t-new",
        message="instance from MOD kept in error/t-new: bad",
        data={"stage": "error", "fail_stage": "receive", "reason": "SOPInstanceUID is missing"},
    )
    bookkeeper.client.post("/api/v1/events", json=_payload([old_style, new_style]))
    found = bookkeeper.client.get("/api/v1/tasks", params={"state": "error"}).json()["items"]
    by_id = {task["task_id"]: task for task in found}
    assert set(by_id) == {"t-old", "t-new"}
    assert all(task["fail_stage"] == "receive" for task in found)
    assert by_id["t-old"]["fail_reason"] == old_style.message
    assert by_id["t-new"]["fail_reason"] == "SOPInstanceUID is missing"


def test_series_tasks_take_the_study_uid_of_their_series(bookkeeper: RunningApp) -> None:
    """Task events of a series task name no study (task.json has none); the task row takes
    its series' study UID, whether the series row came first or later."""
    series = Event(
        service="router",
        kind="series.received",
        series_uid="1.2.3.1",
        study_uid="1.2.3",
        data={"instances": 1, "tags": {"StudyInstanceUID": "1.2.3"}},
    )
    first = Event(service="router", kind="task.created", task_id="t-1", series_uid="1.2.3.1")
    later_series = series.model_copy(update={"id": "later", "series_uid": "1.2.3.2"})
    before = Event(service="router", kind="task.created", task_id="t-2", series_uid="1.2.3.2")
    post = bookkeeper.client.post
    post("/api/v1/events", json=_payload([series]))
    post("/api/v1/events", json=_payload([first]))
    post("/api/v1/events", json=_payload([before]))
    post("/api/v1/events", json=_payload([later_series]))
    tasks = bookkeeper.client.get("/api/v1/tasks", params={"study_uid": "1.2.3"}).json()["items"]
    assert sorted(task["task_id"] for task in tasks) == ["t-1", "t-2"]
