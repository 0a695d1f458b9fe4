"""Search: series and studies by patient, accession, date, modality, sender, rule, state; one
series' whole history. On a real bookkeeper holding the events the services would send."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import httpx
import pytest
from webgui_harness import XSS_PAYLOADS, WebGui, assert_inert

from mercure.core.clock import utcnow
from mercure.core.events import Event

PAGE = {"accept": "text/html"}


def series_events(
    n: int,
    *,
    name: str,
    accession: str,
    study: str,
    modality: str = "CT",
    date: str = "20250110",
    sender: str = "SCANNER",
    rule: str = "ct_rule",
    failed: bool = False,
    when: datetime | None = None,
) -> list[Event]:
    """A series' reception, its task, and its dispatch (complete or failed)."""
    when = when or utcnow() - timedelta(minutes=60 - n)
    series_uid, task_id = f"1.2.3.{n}", f"task-{n:03d}"
    tags = {
        "PatientName": name,
        "PatientID": f"PID{n}",
        "AccessionNumber": accession,
        "StudyInstanceUID": study,
        "StudyDate": date,
        "StudyDescription": f"study {study}",
        "SeriesDescription": f"series {n}",
        "Modality": modality,
        "SenderAET": sender,
    }
    task = {
        "id": task_id,
        "info": {
            "action": "route",
            "uid": series_uid,
            "uid_type": "series",
            "triggered_rules": {rule: True},
            "applied_rule": rule,
        },
        "dispatch": {"target_name": ["pacs"]},
    }
    on_task = {"task_id": task_id, "series_uid": series_uid, "study_uid": study}
    events = [
        Event(
            time=when,
            service="router",
            kind="series.received",
            series_uid=series_uid,
            study_uid=study,
            message="series of 3 instances received",
            data={"tags": tags, "instances": 3},
        ),
        Event(
            time=when + timedelta(seconds=1),
            service="router",
            kind="task.created",
            data={"stage": "outgoing", "task": task},
            **on_task,
        ),
        Event(
            time=when + timedelta(seconds=2),
            service="dispatcher",
            kind="dispatch.begin",
            data={"target": "pacs"},
            **on_task,
        ),
    ]
    if failed:
        events.append(
            Event(
                time=when + timedelta(seconds=3),
                service="dispatcher",
                kind="dispatch.failed",
                severity="error",
                message="pacs refused the association",
                data={"target": "pacs", "reason": "association rejected", "stage": "error"},
                **on_task,
            )
        )
    else:
        events.append(
            Event(
                time=when + timedelta(seconds=3),
                service="dispatcher",
                kind="dispatch.complete",
                message="3 instances sent to pacs",
                data={"target": "pacs", "instances": 3, "stage": "success"},
                **on_task,
            )
        )
    return events


def hostile_series_events(n: int, payload: str) -> list[Event]:
    """:func:`series_events` of a failed series with ``payload`` in every text it carries:
    patient name, modality, sender, rule, descriptions, the failure's reason and message."""
    events = series_events(
        n,
        name=payload,
        accession=f"X{n}",
        study=f"7.{n}",
        modality=payload,
        sender=payload,
        rule=payload,
        failed=True,
    )
    events[0].data["tags"]["SeriesDescription"] = payload
    events[0].data["tags"]["StudyDescription"] = payload
    events[-1].data["reason"] = payload
    events[-1].message = payload
    return events


@pytest.fixture
def filled(webgui: WebGui) -> WebGui:
    """Six series of four studies, one failed."""
    events = (
        series_events(1, name="Doe^John", accession="ACC1", study="9.1")
        + series_events(2, name="Doe^John", accession="ACC1", study="9.1", modality="SR")
        + series_events(3, name="DOE^Jane", accession="ACC2", study="9.2", date="20250112")
        + series_events(
            4,
            name="Müller^Jürgen",
            accession="ACC3",
            study="9.3",
            modality="MR",
            rule="mr_rule",
            sender="MRI1",
            failed=True,
        )
        + series_events(5, name="Roe^Richard", accession="ACC4", study="9.4", date="20241231")
        + series_events(6, name="Roe^Richard", accession="ACC4", study="9.4", date="20241231")
    )
    webgui.store_events(events)
    return webgui


def rows(html: str) -> list[str]:
    """The result rows' series (or study) links, in order."""
    body = (
        html.split('class="results', 1)[1].split("</table>")[0] if 'class="results' in html else ""
    )
    return re.findall(r'<a href="[^"]*"[^>]*>([^<]+)</a>', body)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["series 6", "series 5", "series 4", "series 3", "series 2", "series 1"]),
        ({"patient_name": "doe j"}, ["series 3", "series 2", "series 1"]),
        ({"patient_name": "DOE^JA"}, ["series 3"]),
        ({"patient_name": "müller"}, ["series 4"]),
        ({"patient_name": "*richard"}, ["series 6", "series 5"]),
        ({"patient_id": "PID2"}, ["series 2"]),
        ({"accession": "ACC1"}, ["series 2", "series 1"]),
        ({"date_from": "2025-01-11", "date_to": "2025-01-12"}, ["series 3"]),
        ({"date_to": "2024-12-31"}, ["series 6", "series 5"]),
        ({"modality": "MR"}, ["series 4"]),
        ({"sender_aet": "MRI1"}, ["series 4"]),
        ({"rule": "mr_rule"}, ["series 4"]),
        ({"state": "error"}, ["series 4"]),
        ({"state": "success", "accession": "ACC4"}, ["series 6", "series 5"]),
        ({"received": "1d", "accession": "ACC2"}, ["series 3"]),
        ({"accession": "nothing"}, []),
    ],
)
def test_series_search_by_each_criterion(
    filled: WebGui, viewer: httpx.Client, params: dict[str, str], expected: list[str]
) -> None:
    """Each field of the form finds exactly its series, latest first."""
    response = viewer.get("/search", params=params, headers=PAGE)
    assert response.status_code == 200, response.text
    assert rows(response.text) == expected
    if params == {"state": "error"}:
        assert '<span class="state-badge state-error">error</span>' in response.text
    if not expected:
        assert "No series match" in response.text


def test_study_search_groups_series_and_links_to_them(filled: WebGui, viewer: httpx.Client) -> None:
    """Studies: one row per study with its modalities and counts; its link lists its series."""
    page = viewer.get("/search", params={"kind": "studies", "patient_name": "doe"}, headers=PAGE)
    assert page.status_code == 200
    assert rows(page.text) == ["study 9.2", "study 9.1"]
    row = page.text.split("study 9.1")[1].split("</tr>")[0]
    assert "CT, SR" in row
    assert re.search(r'class="num">2</td>\s*<td class="num">6</td>', row)
    link = re.search(r'<a href="([^"]+)" title="the series of this study">study 9.1', page.text)
    assert link is not None
    series = viewer.get(link[1].replace("&amp;", "&"), headers=PAGE)
    assert rows(series.text) == ["series 2", "series 1"]


def test_pages_of_fifty_go_older_and_newer(webgui: WebGui, viewer: httpx.Client) -> None:
    """Paging keeps the criteria and visits every series once."""
    start = utcnow() - timedelta(hours=5)
    events = [
        e
        for n in range(120)
        for e in series_events(
            n,
            name="Page^Test",
            accession="PAGED",
            study=f"8.{n}",
            when=start + timedelta(minutes=n),
        )[:1]
    ]
    webgui.store_events(events)
    seen: list[str] = []
    path = "/search?accession=PAGED"
    for _ in range(3):
        page = viewer.get(path, headers=PAGE).text
        seen += rows(page)
        older = re.search(r'<a href="([^"]+)" role="button" class="secondary outline">older', page)
        if older is None:
            break
        path = older[1].replace("&amp;", "&")
        assert "accession=PAGED" in path
    assert seen == [f"series {n}" for n in reversed(range(120))]
    assert "newer" in page


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"date_from": "2025-13-01"}, "is not a date"),
        ({"date_from": "yesterday"}, "is not a date"),
        ({"date_from": "2025-02-01", "date_to": "2025-01-01"}, "first day is after the last"),
        ({"accession": "x" * 201}, "at most 200 characters"),
        ({"offset": "many"}, "offset: not a number"),
    ],
)
def test_wrong_input_says_what_is_wrong(
    filled: WebGui, viewer: httpx.Client, params: dict[str, str], message: str
) -> None:
    """A wrong field gives a 422 page naming it; nothing is searched."""
    response = viewer.get("/search", params=params, headers=PAGE)
    assert response.status_code == 422
    assert "The search was not run" in response.text
    assert message in response.text
    assert rows(response.text) == []


def test_series_history_from_reception_to_each_target(filled: WebGui, viewer: httpx.Client) -> None:
    """The series page: identity, every tag, its task with the target's reason, the events."""
    page = viewer.get("/search", params={"accession": "ACC3"}, headers=PAGE).text
    link = re.search(r'<a href="([^"]+)">series 4</a>', page)
    assert link is not None and link[1] == "/search/series/1.2.3.4"
    history = viewer.get(link[1], headers=PAGE)
    assert history.status_code == 200
    text = history.text
    assert "Müller, Jürgen" in text
    assert "2025-01-10" in text
    assert "task-004" in text
    assert "mr_rule" in text
    assert "association rejected" in text
    kinds = re.findall(r"<code>([a-z]+\.[a-z_.]+)</code>", text.split("History", 1)[1])
    assert kinds == ["series.received", "task.created", "dispatch.begin", "dispatch.failed"]


def test_unknown_series_and_bookkeeper_down_are_said_plainly(
    filled: WebGui, viewer: httpx.Client
) -> None:
    """404 for a series nobody knows; 503 with the banner while the bookkeeper is down."""
    unknown = viewer.get("/search/series/1.2.999", headers=PAGE)
    assert unknown.status_code == 404
    assert "knows no series" in unknown.text
    filled.bookkeeper_down = True
    down = viewer.get("/search/series/1.2.3.1", headers=PAGE)
    assert down.status_code == 503
    assert "bookkeeper is unreachable" in down.text
    search = viewer.get("/search", params={"accession": "ACC1"}, headers=PAGE)
    assert search.status_code == 200
    assert "bookkeeper" in search.text and rows(search.text) == []


def test_hostile_tags_are_shown_as_text(webgui: WebGui, viewer: httpx.Client) -> None:
    """Markup in a patient name, description, AE title, rule or reason stays text."""
    for n, payload in enumerate(XSS_PAYLOADS):
        events = hostile_series_events(n, payload)
        webgui.store_events(events)
    for params in ({}, {"kind": "studies"}, {"patient_name": XSS_PAYLOADS[0]}):
        page = viewer.get("/search", params=params, headers=PAGE)
        assert page.status_code == 200
        assert_inert(page.text)
    for n in range(len(XSS_PAYLOADS)):
        page = viewer.get(f"/search/series/1.2.3.{n}", headers=PAGE)
        assert page.status_code == 200
        assert_inert(page.text)
        assert "&lt;" in page.text


def test_a_task_id_with_markup_and_slashes_makes_a_link_not_an_error(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """A task id the bookkeeper recorded with ``/`` and markup in it: the series page still
    renders (the link is percent-encoded) and the markup stays text."""
    events = series_events(1, name="A^B", accession="A1", study="9.9")
    for event in events[1:]:
        event.task_id = "task" + XSS_PAYLOADS[0]
    events[1].data["task"]["id"] = events[1].task_id
    webgui.store_events(events)
    page = viewer.get("/search/series/1.2.3.1", headers=PAGE)
    assert page.status_code == 200
    assert_inert(page.text)
    assert "/queue/tasks/task%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in page.text
