"""Text from DICOM, peers and services is shown as text: markup in a patient name, an AE
title, a rule name, a failure reason, a heartbeat or a pause reason is never executed
(mercure's issue #90 was exactly this).

:func:`plant_everywhere` puts the payloads into every source a page shows, and the crawl
test follows every link of every page from the overview: a page added later is checked
the moment a link leads to it."""

from __future__ import annotations

import os
import re
from collections import deque
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import httpx
from test_webgui_logs import record, write_log
from test_webgui_queue import place
from test_webgui_search import hostile_series_events
from webgui_harness import XSS_PAYLOADS, WebGui, assert_inert

from mercure.core.clock import utcnow
from mercure.core.datafolder import Stage
from mercure.core.events import Event
from mercure.core.heartbeat import Heartbeat

PAGE = {"accept": "text/html"}


def hostile_events() -> list[Event]:
    """Error events whose every text field carries one of the payloads."""
    now = utcnow()
    events = []
    for n, payload in enumerate(XSS_PAYLOADS):
        events.append(
            Event(
                time=now - timedelta(minutes=n + 1),
                service=f"dispatcher{payload}",
                kind=f"task.failed{payload}",
                severity="error",
                task_id=f"task{payload}",
                message=f"patient {payload} from AE {payload} by rule {payload}: {payload}",
                data={
                    "reason": payload,
                    "rule": payload,
                    "PatientName": payload,
                    "SenderAET": payload,
                },
            )
        )
    return events


def test_hostile_text_on_the_overview_stays_text(webgui: WebGui, viewer: httpx.Client) -> None:
    """Events, heartbeats and pause reasons with markup: escaped on the page and fragments."""
    webgui.store_events(hostile_events())
    webgui.beat_all(detail=XSS_PAYLOADS[0])
    for n, payload in enumerate(XSS_PAYLOADS):
        # A heartbeat is only a file: its instance and host may hold anything.
        beat = Heartbeat(
            service="router",
            instance=payload,
            host=payload,
            pid=os.getpid(),
            state="running",
            started_at=utcnow(),
            time=utcnow(),
            interval=5.0,
            detail=payload,
        )
        (webgui.data.run_dir / f"router@hostile{n}.json").write_text(beat.model_dump_json())
    webgui.data.pause(Stage.OUTGOING, f"maintenance {XSS_PAYLOADS[1]}")
    pages = [
        viewer.get("/", headers=PAGE),
        viewer.get("/overview/services", headers={"hx-request": "true"}),
        viewer.get("/overview/throughput", headers={"hx-request": "true"}),
    ]
    shown = 0
    for page in pages:
        assert page.status_code == 200
        assert_inert(page.text)
        for payload in XSS_PAYLOADS:
            assert payload not in page.text
            escaped = payload.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            shown += page.text.count(escaped.replace('"', "&#34;"))
    assert shown >= 4  # the payloads are there, as text


def test_hostile_user_name_on_the_sign_in_page_stays_text(
    webgui: WebGui, anonymous: httpx.Client
) -> None:
    """A user name with markup, echoed into the form after a failure, is escaped."""
    import re

    for payload in XSS_PAYLOADS:
        page = anonymous.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        answer = anonymous.post(
            "/login",
            data={"name": payload, "password": "x", "csrf_token": token.group(1), "next": payload},
        )
        assert answer.status_code == 401
        assert_inert(answer.text)
        assert payload not in answer.text


def test_hostile_next_parameter_stays_text(anonymous: httpx.Client) -> None:
    """The next= of the sign-in page goes into an attribute, escaped."""
    for payload in XSS_PAYLOADS:
        page = anonymous.get("/login", params={"next": payload})
        assert_inert(page.text)
        assert payload not in page.text


def plant_everywhere(webgui: WebGui) -> None:
    """The payloads in every source the pages read: events and series (patient, AE title,
    rule, descriptions, reasons), task folders in error/ and outgoing/, a pause reason,
    heartbeats, log lines and audit entries."""
    webgui.store_events(hostile_events())
    webgui.beat_all(detail=XSS_PAYLOADS[0])
    for n, payload in enumerate(XSS_PAYLOADS):
        events = hostile_series_events(n, payload)
        for event in events:
            event.task_id = event.task_id and f"t-{n}"
        webgui.store_events(events)
        for stage in (Stage.ERROR, Stage.OUTGOING):
            place(
                webgui,
                stage,
                f"t-{n}" if stage is Stage.ERROR else f"o-{n}",
                patient=payload,
                rule=payload,
                reason=payload,
                targets=(payload,),
                accession=payload,
            )
        write_log(webgui, record("ERROR", f"target {payload} refused: {payload}"))
        webgui.store_events(
            [
                Event(
                    service="webgui",
                    kind="audit.task.requeue",
                    message=payload,
                    data={"user": payload, "object": payload, "remote_address": payload},
                )
            ]
        )
    webgui.data.pause(Stage.PROCESSING, f"maintenance {XSS_PAYLOADS[1]}")


_LINK = re.compile(r'(?:href|hx-get|data-src)="(/[^"]*)"')
CRAWL_LIMIT = 400


def test_every_page_reached_by_links_keeps_hostile_text_inert(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """From the overview, every link and fragment of every page (as an admin, who sees
    most), with markup planted everywhere: no page fails, none lets markup through, and the
    crawl reached every kind of page."""
    plant_everywhere(webgui)
    seen: set[str] = set()
    routes: set[str] = set()
    queue = deque(["/"])
    while queue and len(seen) < CRAWL_LIMIT:
        path = queue.popleft()
        if path in seen:
            continue
        seen.add(path)
        response = admin.get(path, headers={"hx-request": "true"} if "/live" in path else PAGE)
        assert response.status_code < 500, (path, response.status_code)
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue
        assert_inert(response.text)
        for payload in XSS_PAYLOADS:
            assert payload not in response.text, path
        routes.add(urlsplit(path).path.split("/")[1] or "overview")
        for link in _LINK.findall(response.text):
            link = urljoin(path, link.replace("&amp;", "&"))
            if link.startswith("/static/") or link in seen:
                continue
            queue.append(link)
    assert {"overview", "queue", "search", "logs", "audit", "users"} <= routes, routes
    assert any(p.startswith("/queue/tasks/") for p in seen)
    assert any(p.startswith("/search/series/") for p in seen)
    assert len(seen) < CRAWL_LIMIT, "the crawl stopped before the end: raise the limit"
