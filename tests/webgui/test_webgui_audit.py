"""The audit page: the bookkeeper's audit entries for admins only, newest first, filtered by
user, action and time, a page at a time; hostile text in an entry stays text."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx
from webgui_harness import XSS_PAYLOADS, WebGui, assert_inert

from mercure.core.events import Event

PAGE = {"accept": "text/html"}
BASE = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def entry(
    minute: int,
    action: str = "queue.pause",
    user: str = "alice",
    *,
    object: str | None = "outgoing",
    address: str | None = "10.1.2.3",
    message: str = "paused outgoing",
    **details: object,
) -> Event:
    """An ``audit.<action>`` event ``minute`` minutes after BASE."""
    data: dict[str, object] = {"user": user, "object": object, "remote_address": address}
    return Event(
        time=BASE + timedelta(minutes=minute),
        service="webgui",
        kind=f"audit.{action}",
        message=message,
        data={**data, **details},
    )


def rows(page: str) -> list[list[str]]:
    """The audit table's cells, as text, row by row."""
    body = re.search(r"<tbody>(.*?)</tbody>", page, re.S)
    if body is None:
        return []
    found = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found.append([html.unescape(re.sub(r"<[^>]+>", " ", c)).split() for c in cells])
    return [[" ".join(words) for words in cells] for cells in found]


def local(moment: datetime) -> str:
    """A time as the form's datetime-local field sends it (server's time zone)."""
    return moment.astimezone().replace(tzinfo=None).isoformat(timespec="minutes")


def test_entries_newest_first_with_every_column(webgui: WebGui, admin: httpx.Client) -> None:
    """Time, user, action, object, address, message and details, newest first."""
    webgui.store_events(
        [
            entry(1, "queue.pause", "alice", message="paused outgoing", reason="maintenance"),
            entry(
                2, "task.requeue", "bob", object="task-42", address="10.9.9.9", message="requeued"
            ),
        ]
    )
    window = {"since": local(BASE), "until": local(BASE + timedelta(hours=1))}
    page = admin.get("/audit", params=window, headers=PAGE)
    assert page.status_code == 200
    found = rows(page.text)
    assert [r[1:7] for r in found] == [
        ["bob", "task.requeue", "task-42", "10.9.9.9", "requeued", ""],
        ["alice", "queue.pause", "outgoing", "10.1.2.3", "paused outgoing", "reason maintenance"],
    ]
    shown_time = (BASE + timedelta(minutes=2)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert found[0][0] == shown_time


def test_user_changes_and_sign_ins_appear(webgui: WebGui, admin: httpx.Client) -> None:
    """The bookkeeper's own entries (the fixture's users and sign-ins) are on the page."""
    page = admin.get("/audit", headers=PAGE).text
    actions = [r[2] for r in rows(page)]
    assert actions.count("user.create") == 3
    assert "login" in actions
    login = next(r for r in rows(page) if r[2] == "login")
    assert login[1] == "admin" and login[4] == "127.0.0.1"


def test_filters_by_user_action_and_time(webgui: WebGui, admin: httpx.Client) -> None:
    """User and action match exactly; From is inclusive, Until exclusive."""
    webgui.store_events(
        [
            entry(0, "queue.pause", "alice"),
            entry(10, "queue.resume", "alice"),
            entry(20, "queue.pause", "bob"),
            entry(30, "queue.pause", "alice"),
        ]
    )
    by_user = rows(admin.get("/audit", params={"user": "bob"}, headers=PAGE).text)
    assert [(r[1], r[2]) for r in by_user] == [("bob", "queue.pause")]
    both = admin.get("/audit", params={"user": "alice", "action": "queue.pause"}).text
    assert len(rows(both)) == 2
    window = {
        "since": local(BASE + timedelta(minutes=10)),
        "until": local(BASE + timedelta(minutes=30)),
    }
    in_window = rows(admin.get("/audit", params=window, headers=PAGE).text)
    assert [(r[1], r[2]) for r in in_window] == [("bob", "queue.pause"), ("alice", "queue.resume")]
    none = admin.get("/audit", params={"user": "nobody"}, headers=PAGE).text
    assert rows(none) == [] and "No entries match these filters." in none


def test_clicking_a_user_or_action_filters_by_it(webgui: WebGui, admin: httpx.Client) -> None:
    """The user and action of each row link to the page filtered by them."""
    webgui.store_events([entry(1, "queue.pause", "carol@ward")])
    page = admin.get("/audit", headers=PAGE).text
    link = re.search(r'<a href="([^"]+)" title="only entries of this user">carol@ward</a>', page)
    assert link is not None
    filtered = admin.get(html.unescape(link.group(1)), headers=PAGE).text
    assert [r[1] for r in rows(filtered)] == ["carol@ward"]


def test_pages_of_fifty(webgui: WebGui, admin: httpx.Client) -> None:
    """120 entries: 50, 50, 20, with newer/older links that keep the filters."""
    webgui.store_events([entry(n, message=f"entry {n}") for n in range(120)])
    page = admin.get("/audit", params={"action": "queue.pause"}, headers=PAGE).text
    seen = [r[5] for r in rows(page)]
    assert seen == [f"entry {n}" for n in range(119, 69, -1)]
    assert "← newer" not in page
    for expected in (range(69, 19, -1), range(19, -1, -1)):
        older = re.search(r'<a href="([^"]+)" rel="next">', page)
        assert older is not None
        href = html.unescape(older.group(1))
        assert "action=queue.pause" in href
        page = admin.get(href, headers=PAGE).text
        assert [r[5] for r in rows(page)] == [f"entry {n}" for n in expected]
        assert 'rel="prev"' in page
    assert 'rel="next"' not in page
    assert "entries 101\u2013120" in page


def test_bad_filters_are_named_not_failed(webgui: WebGui, admin: httpx.Client) -> None:
    """An unreadable time, a range the wrong way round, a bad offset: said, never a 500."""
    page = admin.get("/audit", params={"since": "yesterday", "offset": "x"}, headers=PAGE)
    assert page.status_code == 200
    assert "From: &#39;yesterday&#39; is not a date and time" in page.text
    assert "Page offset &#39;x&#39; is not a number" in page.text
    wrong_way = admin.get(
        "/audit", params={"since": "2026-12-04T10:00", "until": "2026-12-04T09:00"}, headers=PAGE
    )
    assert "From must be before Until" in wrong_way.text
    assert len(rows(wrong_way.text)) >= 3  # the range was left out


def test_bookkeeper_down_is_said_not_failed(webgui: WebGui, admin: httpx.Client) -> None:
    """No bookkeeper: the banner and a sentence instead of the table."""
    webgui.bookkeeper_down = True
    page = admin.get("/audit", headers=PAGE)
    assert page.status_code == 200
    assert "Bookkeeper unreachable" in page.text
    assert "The audit log is kept by the bookkeeper, which does not answer now" in page.text


def test_only_admins_may_read_the_audit_log(
    viewer: httpx.Client, operator: httpx.Client, admin: httpx.Client
) -> None:
    """Viewers and operators get 403 and no menu entry; admins see it in the menu."""
    for client in (viewer, operator):
        answer = client.get("/audit", headers=PAGE)
        assert answer.status_code == 403
        assert "This needs the admin role" in answer.text
        assert ">Audit</a>" not in client.get("/", headers=PAGE).text
    assert ">Audit</a>" in admin.get("/", headers=PAGE).text


def test_hostile_entries_stay_text(webgui: WebGui, admin: httpx.Client) -> None:
    """Markup in user, object, address, message and details (keys and values) is text."""
    events = []
    for n, payload in enumerate(XSS_PAYLOADS):
        events.append(
            entry(
                n,
                "queue.pause",
                payload,
                object=payload,
                address=payload[:64],
                message=f"paused {payload}",
                **{payload: payload, "reason": payload},
            )
        )
    webgui.store_events(events)
    page = admin.get("/audit", headers=PAGE).text
    assert_inert(page)
    for payload in XSS_PAYLOADS:
        assert payload not in page
    hostile = [r for r in rows(page) if r[1] in XSS_PAYLOADS]
    assert len(hostile) == 2
    assert hostile[0][5] == f"paused {XSS_PAYLOADS[1]}"
    filtered = admin.get("/audit", params={"user": XSS_PAYLOADS[0]}, headers=PAGE).text
    assert_inert(filtered)
    assert [r[1] for r in rows(filtered)] == [XSS_PAYLOADS[0]]
