"""Retrieve jobs in the bookkeeper: the latest ``retrieve.job`` event of each job."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from bookkeeper_harness import RunningApp
from sqlalchemy.engine import Engine

from mercure.bookkeeper import kinds
from mercure.bookkeeper.ingest import ingest
from mercure.bookkeeper.queries import retrieve_jobs
from mercure.core.clock import utcnow
from mercure.core.events import Event


def job_event(job: str, state: str, when: datetime, **data: Any) -> Event:
    """A ``retrieve.job`` event as the retriever emits it."""
    return Event(
        service="retriever",
        kind=kinds.RETRIEVE_JOB,
        time=when,
        message=f"retrieve job {job}: {state}",
        data={
            "job": job,
            "source": "pacs",
            "state": state,
            "studies_total": 10,
            "studies_done": 0,
            "studies_failed": 0,
            "studies_remaining": 10,
            "instances": 0,
            "rate": None,
            "offpeak": False,
            "reason": None,
            **data,
        },
    )


def test_each_job_appears_once_with_its_latest_state(engine: Engine) -> None:
    """Newest report first; old finished jobs left out, old waiting ones kept."""
    now = utcnow()
    ingest(
        engine,
        [
            job_event("lab42", "queued", now - timedelta(hours=2)),
            job_event("lab42", "running", now - timedelta(hours=1), studies_done=3, instances=900),
            job_event(
                "lab42",
                "running",
                now - timedelta(minutes=1),
                studies_done=6,
                studies_failed=1,
                studies_remaining=3,
                instances=1800,
                rate=12.5,
            ),
            job_event("old-done", "done", now - timedelta(days=8), studies_done=10),
            job_event("recent-done", "done", now - timedelta(days=2), studies_done=10),
            job_event("old-paused", "paused", now - timedelta(days=30), reason="paused by admin"),
            Event(service="retriever", kind=kinds.RETRIEVE_STUDY, time=now, data={"job": "lab42"}),
            Event(service="router", kind="series.complete", time=now, data={"job": "other"}),
        ],
    )
    jobs = retrieve_jobs(engine, now)
    assert [j["job"] for j in jobs] == ["lab42", "recent-done", "old-paused"]
    lab42 = jobs[0]
    assert lab42["state"] == "running"
    assert (lab42["studies_done"], lab42["studies_failed"], lab42["studies_remaining"]) == (6, 1, 3)
    assert lab42["instances"] == 1800
    assert lab42["rate"] == 12.5
    assert jobs[2]["reason"] == "paused by admin"
    assert [j["job"] for j in retrieve_jobs(engine, now, finished_within=timedelta(days=9))] == [
        "lab42",
        "recent-done",
        "old-done",
        "old-paused",
    ]


def test_fields_of_the_wrong_type_are_left_out(engine: Engine) -> None:
    """Another service's event is no promise: a bad field is null, the job still listed."""
    now = utcnow()
    ingest(engine, [job_event("odd", "running", now, instances="many", rate=True, reason=7)])
    [job] = retrieve_jobs(engine, now)
    assert (job["instances"], job["rate"], job["reason"]) == (None, None, None)
    assert job["state"] == "running"


def test_the_api_lists_retrieve_jobs_to_key_holders_only(
    bookkeeper: RunningApp, engine: Engine
) -> None:
    """GET /api/v1/retrieve/jobs answers with the jobs; without the key, 401."""
    now = utcnow()
    ingest(
        engine,
        [job_event("lab42", "running", now), job_event("old", "failed", now - timedelta(days=3))],
    )
    response = bookkeeper.client.get("/api/v1/retrieve/jobs")
    assert response.status_code == 200, response.text
    assert [j["job"] for j in response.json()["items"]] == ["lab42", "old"]
    narrow = bookkeeper.client.get("/api/v1/retrieve/jobs", params={"finished_days": 1})
    assert [j["job"] for j in narrow.json()["items"]] == ["lab42"]
    with httpx.Client(base_url=bookkeeper.url) as anonymous:
        assert anonymous.get("/api/v1/retrieve/jobs").status_code == 401
