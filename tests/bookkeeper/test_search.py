"""The read API: search tasks, series and events by every filter, with paging."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from bookkeeper_harness import RunningApp, serve_app
from bookkeeper_pipeline import Pipeline, SeriesRun

from mercure.bookkeeper.app import create_app
from mercure.bookkeeper.database import create_database_engine, migrate
from mercure.bookkeeper.ingest import ingest

SERIES = 12


@dataclass
class Populated:
    """A bookkeeper holding the events of :data:`SERIES` series."""

    app: RunningApp
    runs: list[SeriesRun]

    def created(self, index: int) -> datetime:
        """When the task of series ``index`` was created."""
        return next(e.time for e in self.runs[index].events if e.kind == "task.created")


@pytest.fixture(scope="module")
def populated(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Populated]:
    """Every test of this module reads the same data (once per database backend)."""
    engine = create_database_engine(module_database_url)
    migrate(engine)
    pipeline = Pipeline(tmp_path_factory.mktemp("outbox"))
    runs = [pipeline.run_series(i, process=i % 2 == 0, fail=i % 5 == 4) for i in range(SERIES)]
    pipeline.stop()
    ingest(engine, pipeline.emitted)
    for running in serve_app(create_app(engine, api_key="test-token-3f9a")):
        yield Populated(running, runs)
    engine.dispose()


def _all_pages(app: RunningApp, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        response = app.client.get(path, params={**params, "offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        offset = page["next_offset"]
    return items


Case = tuple[dict[str, Any] | Callable[[Populated], dict[str, Any]], Callable[[SeriesRun], bool]]

TASK_CASES: dict[str, Case] = {
    "accession": ({"accession": "ACC0003"}, lambda r: r.index == 3),
    "patient_id": ({"patient_id": "PAT1"}, lambda r: r.index % 5 == 1),
    "series_uid": ({"series_uid": "1.2.826.0.1.3680043.10.543.1.4"}, lambda r: r.index == 4),
    "study_uid": ({"study_uid": "1.2.826.0.1.3680043.10.543.2.1"}, lambda r: r.index in (2, 3)),
    "rule": ({"rule": "mr_rule"}, lambda r: r.rule == "mr_rule"),
    "target": ({"target": "archive"}, lambda r: r.target == "archive"),
    "state": ({"state": "error"}, lambda r: r.failed),
    "several_states": ({"state": ["error", "cleaned"]}, lambda r: True),
    "since": (lambda p: {"since": p.created(7).isoformat()}, lambda r: r.index >= 7),
    "until": (lambda p: {"until": p.created(3).isoformat()}, lambda r: r.index < 3),
    "combined": (
        {"rule": "ct_rule", "state": "cleaned", "patient_id": "PAT0"},
        lambda r: r.rule == "ct_rule" and not r.failed and r.patient_id == "PAT0",
    ),
    "no_match": ({"accession": "nothing"}, lambda r: False),
}


def _params(case: Case, populated: Populated) -> dict[str, Any]:
    params = case[0]
    return params(populated) if callable(params) else dict(params)


@pytest.mark.parametrize("name", list(TASK_CASES))
def test_task_search_filters(populated: Populated, name: str) -> None:
    """Each task filter, alone and combined, selects exactly the matching tasks."""
    case = TASK_CASES[name]
    found = _all_pages(populated.app, "/api/v1/tasks", {**_params(case, populated), "limit": 5})
    expected = {run.task_id for run in populated.runs if case[1](run)}
    assert {task["task_id"] for task in found} == expected
    assert len(found) == len(expected)


def test_task_pages_are_newest_first_and_complete(populated: Populated) -> None:
    """Paging through tasks visits each once, newest first, with its targets and rules."""
    found = _all_pages(populated.app, "/api/v1/tasks", {"limit": 5})
    assert [task["task_id"] for task in found] == [run.task_id for run in reversed(populated.runs)]
    first = found[-1]
    assert first["rules"] == ["ct_rule"]
    assert [(t["target"], t["state"]) for t in first["targets"]] == [("pacs", "complete")]


def test_rule_hits_count_the_tasks_and_series_of_each_rule(populated: Populated) -> None:
    """/rules/hits: per rule, the tasks created in the period that it fired for."""
    start = min(run.events[0].time for run in populated.runs)
    response = populated.app.client.get("/api/v1/rules/hits", params={"since": start.isoformat()})
    assert response.status_code == 200, response.text
    hits = {hit["rule"]: (hit["tasks"], hit["series"]) for hit in response.json()["rules"]}
    expected: dict[str, int] = {}
    for run in populated.runs:
        expected[run.rule] = expected.get(run.rule, 0) + 1
    assert hits == {rule: (count, count) for rule, count in expected.items()}
    later = populated.created(7).isoformat()
    response = populated.app.client.get("/api/v1/rules/hits", params={"since": later})
    recent = {hit["rule"]: hit["tasks"] for hit in response.json()["rules"]}
    assert sum(recent.values()) == SERIES - 7
    response = populated.app.client.get("/api/v1/rules/hits", params={"until": start.isoformat()})
    assert response.status_code == 200 and response.json()["rules"] == []


SERIES_CASES: dict[str, Case] = {
    "accession": ({"accession": "ACC0005"}, lambda r: r.index == 5),
    "patient_id": ({"patient_id": "PAT2"}, lambda r: r.index % 5 == 2),
    "series_uid": ({"series_uid": "1.2.826.0.1.3680043.10.543.1.6"}, lambda r: r.index == 6),
    "study_uid": ({"study_uid": "1.2.826.0.1.3680043.10.543.2.4"}, lambda r: r.index in (8, 9)),
    "modality": ({"modality": "MR"}, lambda r: r.modality == "MR"),
    "sender_aet": ({"sender_aet": "MODALITY"}, lambda r: True),
    "rule": ({"rule": "ct_rule"}, lambda r: r.rule == "ct_rule"),
    "target": ({"target": "pacs"}, lambda r: r.target == "pacs"),
    "state": ({"state": "error"}, lambda r: r.failed),
    "patient_name_prefix": ({"patient_name": "doe j"}, lambda r: r.index % 4 in (0, 1)),
    "patient_name_dicom_form": ({"patient_name": "DOE^JA"}, lambda r: r.index % 4 == 1),
    "patient_name_any_case": ({"patient_name": "MÜLLER"}, lambda r: r.index % 4 == 2),
    "patient_name_wildcards": ({"patient_name": "*r?chard"}, lambda r: r.index % 4 == 3),
    "patient_name_not_inside": ({"patient_name": "john"}, lambda r: False),
    "patient_name_like_chars_are_text": ({"patient_name": "doe%"}, lambda r: False),
    "study_date": ({"study_date": "20250104"}, lambda r: r.index == 3),
    "study_date_range": ({"study_date": "20250103-20250105"}, lambda r: 2 <= r.index <= 4),
    "study_date_open_start": ({"study_date": "-20250102"}, lambda r: r.index <= 1),
    "study_date_open_end": ({"study_date": "20250111-"}, lambda r: r.index >= 10),
    "since": (
        lambda p: {"since": p.runs[9].events[0].time.isoformat()},
        lambda r: r.index >= 9,
    ),
    "until": (
        lambda p: {"until": p.runs[2].events[0].time.isoformat()},
        lambda r: r.index < 2,
    ),
}


@pytest.mark.parametrize("name", list(SERIES_CASES))
def test_series_search_filters(populated: Populated, name: str) -> None:
    """Each series filter selects exactly the matching series."""
    case = SERIES_CASES[name]
    found = _all_pages(populated.app, "/api/v1/series", {**_params(case, populated), "limit": 4})
    expected = {run.series_uid for run in populated.runs if case[1](run)}
    assert {series["series_uid"] for series in found} == expected
    assert len(found) == len(expected)


def test_series_record_holds_key_tags_and_counts(populated: Populated) -> None:
    """A series row carries its key tags, sender and instance count."""
    (series,) = populated.app.client.get("/api/v1/series", params={"accession": "ACC0000"}).json()[
        "items"
    ]
    assert series["patient_id"] == "PAT0"
    assert series["modality"] == "CT"
    assert series["sender_aet"] == "MODALITY"
    assert series["instance_count"] == 3
    assert series["tags"]["SeriesDescription"] == "series 0"
    assert series["task_states"] == ["cleaned"]
    (failed,) = populated.app.client.get("/api/v1/series", params={"accession": "ACC0004"}).json()[
        "items"
    ]
    assert failed["task_states"] == ["error"]


@pytest.mark.parametrize(
    "name", ["patient_name_prefix", "study_date_range", "modality", "rule", "state"]
)
def test_study_search_groups_the_matching_series(populated: Populated, name: str) -> None:
    """Studies with a matching series, each with its series and instance counts."""
    case = SERIES_CASES[name]
    found = _all_pages(populated.app, "/api/v1/studies", {**_params(case, populated), "limit": 2})
    expected = {run.study_uid for run in populated.runs if case[1](run)}
    assert [study["study_uid"] for study in found] == sorted(
        expected,
        key=lambda uid: max(r.index for r in populated.runs if r.study_uid == uid),
        reverse=True,
    )
    for study in found:
        runs = [run for run in populated.runs if run.study_uid == study["study_uid"]]
        assert study["series_count"] == len(runs)
        assert study["instance_count"] == 3 * len(runs)
        assert study["modalities"] == sorted({run.modality for run in runs})
        assert study["first_received"] <= study["last_received"]


@pytest.mark.parametrize("value", ["2025", "20251301", "20250101-2025", "-", "x", "20250101--"])
def test_a_wrong_study_date_is_refused_with_the_reason(populated: Populated, value: str) -> None:
    """An invalid date or range is a 422 that names the parameter and the form it needs."""
    for path in ("/api/v1/series", "/api/v1/studies"):
        response = populated.app.client.get(path, params={"study_date": value})
        assert response.status_code == 422, (path, value)
        assert "YYYYMMDD" in response.text


def test_series_history_reads_from_reception_to_each_target(populated: Populated) -> None:
    """The history of a series: its record, its task with targets, every event oldest first."""
    run = populated.runs[4]
    response = populated.app.client.get(f"/api/v1/series/{run.series_uid}/history")
    assert response.status_code == 200, response.text
    history = response.json()
    assert history["series"]["patient_name"] == "Doe^John"
    assert history["series"]["study_date"] == "20250105"
    assert [task["task_id"] for task in history["tasks"]] == [run.task_id]
    assert history["tasks"][0]["targets"]
    # All of the series' events but the association's (it names several series in its data).
    expected = [e.id for e in run.events if e.series_uid == run.series_uid or e.task_id]
    assert len(expected) == len(run.events) - 1
    assert [event["id"] for event in history["events"]] == expected
    assert history["events_truncated"] is False
    assert populated.app.client.get("/api/v1/series/nope/history").status_code == 404


EVENT_CASES: dict[str, tuple[dict[str, Any], Callable[[Any], bool]]] = {
    "kind": ({"kind": "dispatch.complete"}, lambda e: e.kind == "dispatch.complete"),
    "kind_prefix": ({"kind_prefix": "dispatch."}, lambda e: e.kind.startswith("dispatch.")),
    "service": ({"service": "processor"}, lambda e: e.service == "processor"),
    "severity": ({"severity": "error"}, lambda e: e.severity in ("error", "critical")),
    "task_id": ({"task_id": "task-0002"}, lambda e: e.task_id == "task-0002"),
    "series_uid": (
        {"series_uid": "1.2.826.0.1.3680043.10.543.1.1"},
        lambda e: e.series_uid == "1.2.826.0.1.3680043.10.543.1.1",
    ),
    "study_uid": (
        {"study_uid": "1.2.826.0.1.3680043.10.543.2.0"},
        lambda e: e.study_uid == "1.2.826.0.1.3680043.10.543.2.0",
    ),
}


@pytest.mark.parametrize("name", list(EVENT_CASES))
def test_event_search_filters(populated: Populated, name: str) -> None:
    """Each event filter selects exactly the matching events, newest first."""
    params, predicate = EVENT_CASES[name]
    found = _all_pages(populated.app, "/api/v1/events", {**params, "limit": 50})
    emitted = [e for run in populated.runs for e in run.events if predicate(e)]
    assert {e["id"] for e in found} == {e.id for e in emitted}
    times = [e["time"] for e in found]
    assert times == sorted(times, reverse=True)


def test_event_search_by_time_range(populated: Populated) -> None:
    """since/until bound the events by their own time."""
    all_events = sorted((e for run in populated.runs for e in run.events), key=lambda e: e.time)
    since, until = all_events[10].time, all_events[20].time
    found = _all_pages(
        populated.app,
        "/api/v1/events",
        {"since": since.isoformat(), "until": until.isoformat(), "limit": 7},
    )
    assert {e["id"] for e in found} == {e.id for e in all_events[10:20]}


def test_unknown_task_is_404(populated: Populated) -> None:
    """Detail and timeline of an unknown task answer 404."""
    for path in ("/api/v1/tasks/nope", "/api/v1/tasks/nope/timeline"):
        assert populated.app.client.get(path).status_code == 404
