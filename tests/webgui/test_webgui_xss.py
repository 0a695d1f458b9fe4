"""Text from DICOM, peers and services is shown as text: markup in a patient name, an AE
title, a rule name, a failure reason, a heartbeat or a pause reason is never executed
(mercure's issue #90 was exactly this)."""

from __future__ import annotations

import os
from datetime import timedelta

import httpx
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
