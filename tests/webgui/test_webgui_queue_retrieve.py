"""The Queue page's "Retrieve jobs" table: each job's latest progress, from the bookkeeper."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx
from webgui_harness import XSS_PAYLOADS, WebGui, assert_inert

from mercure.bookkeeper.kinds import RETRIEVE_JOB
from mercure.core.clock import utcnow
from mercure.core.events import Event

PAGE = {"accept": "text/html"}


def job_event(job: str, state: str, when: datetime, **data: Any) -> Event:
    """A ``retrieve.job`` event as the retriever emits it."""
    return Event(
        service="retriever",
        kind=RETRIEVE_JOB,
        time=when,
        data={
            "job": job,
            "source": "pacs",
            "state": state,
            "studies_total": 20,
            "studies_done": 0,
            "studies_failed": 0,
            "studies_remaining": 20,
            "instances": 0,
            "rate": None,
            "offpeak": False,
            "reason": None,
            **data,
        },
    )


def rows(html: str) -> list[str]:
    """The rows of the retrieve table, in order."""
    return re.findall(r'<tr class="retrieve-job[^"]*" data-job="([^"]*)"', html)


def test_viewer_sees_each_job_once_with_its_progress(webgui: WebGui, viewer: httpx.Client) -> None:
    """Newest first, latest state, studies as a progress bar; long-finished jobs left out."""
    now = utcnow()
    webgui.store_events(
        [
            job_event("lab42", "queued", now - timedelta(hours=3)),
            job_event(
                "lab42",
                "running",
                now - timedelta(seconds=30),
                studies_done=12,
                studies_failed=2,
                studies_remaining=6,
                instances=4321,
                rate=17.25,
            ),
            job_event(
                "night-ct",
                "waiting-offpeak",
                now - timedelta(hours=1),
                offpeak=True,
                reason="outside the off-peak window 22:00-06:00",
            ),
            job_event("ancient", "done", now - timedelta(days=9), studies_done=20),
        ]
    )
    response = viewer.get("/queue", headers=PAGE)
    assert response.status_code == 200
    html = response.text
    assert "Retrieve jobs" in html
    assert rows(html) == ["lab42", "night-ct"]
    assert '<progress value="14" max="20"' in html
    assert "12 done" in html and "2 failed" in html and "6 remaining of 20" in html
    assert "4\u202f321" in html
    assert "17.2/s" in html
    assert "outside the off-peak window 22:00-06:00" in html
    fragment = viewer.get("/queue/list", headers={"hx-request": "true"})
    assert rows(fragment.text) == ["lab42", "night-ct"]


def test_job_names_and_reasons_stay_text(webgui: WebGui, viewer: httpx.Client) -> None:
    """Markup in a job name or a reason (free text) is escaped."""
    now = utcnow()
    webgui.store_events(
        [
            job_event(payload, "failed", now - timedelta(minutes=n), reason=payload, source=payload)
            for n, payload in enumerate(XSS_PAYLOADS)
        ]
    )
    html = viewer.get("/queue", headers=PAGE).text
    assert_inert(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert len(rows(html)) == len(XSS_PAYLOADS)


def test_queue_page_works_while_the_bookkeeper_is_down(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """The stages still show; the retrieve table says why it is empty."""
    webgui.bookkeeper_down = True
    response = viewer.get("/queue", headers=PAGE)
    assert response.status_code == 200
    assert "Retrieve jobs are not shown" in response.text
    assert "cannot be reached" in response.text


def test_without_jobs_the_table_says_so(viewer: httpx.Client) -> None:
    """No retrieve job: one line instead of an empty table."""
    html = viewer.get("/queue", headers=PAGE).text
    assert "No retrieve job under way or finished in the last 7 days." in html
    assert rows(html) == []
