"""The audit page (admins): who signed in, who changed what, from where; newest first.

The entries are the bookkeeper's ``audit`` table (``GET /api/v1/audit``): sign-ins and user
changes recorded by the bookkeeper itself, every other change made through the web interface
recorded by the route that made it (:mod:`mercure.webgui.audit`). Filters: user and action
(exact), a time range in the server's time zone; pages of :data:`PAGE_SIZE`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mercure.webgui.auth import AdminSession
from mercure.webgui.bookkeeper import AuditRecord, BookkeeperError, BookkeeperRejected
from mercure.webgui.context import web_context
from mercure.webgui.rendering import render, url

router = APIRouter()

PAGE_SIZE = 50
MAX_OFFSET = 1_000_000
MAX_FIELD = 128
KNOWN_ACTIONS = (
    "login",
    "login_failed",
    "login.throttled",
    "logout",
    "user.create",
    "user.role",
    "user.disable",
    "user.enable",
    "user.password",
    "user.remove",
)
"""Offered in the action field (any other action can be typed)."""
WARNING_ACTIONS = frozenset({"login_failed", "login.throttled"})


def _local_time(text: str, field: str, problems: list[str]) -> datetime | None:
    """A time typed in the form (server's time zone unless it says otherwise), in UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        problems.append(
            f"{field}: {text[:40]!r} is not a date and time (e.g. 2026-12-04 07:30); "
            "the filter is left out."
        )
        return None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # the server's local time zone, as the page shows times
    return moment.astimezone(UTC)


def _time_zone() -> str:
    """The server's time zone as the page names it: ``UTC`` or ``CET (UTC+0100)``."""
    now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return "UTC" if offset == "+0000" else f"{now.strftime('%Z')} (UTC{offset})"


def _details(entry: AuditRecord) -> list[tuple[str, str]]:
    """The entry's details as (name, text) pairs."""
    return [
        (str(key), value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in sorted(entry.details.items())
    ]


@router.get("/audit", name="audit")
async def audit_page(
    request: Request,
    _session: AdminSession,
    user: str = "",
    action: str = "",
    since: str = "",
    until: str = "",
    offset: str = "0",
) -> Response:
    """The audit entries, filtered, newest first, a page at a time."""
    web = web_context(request)
    problems: list[str] = []
    user, action = user.strip()[:MAX_FIELD], action.strip()[:MAX_FIELD]
    start = _local_time(since, "From", problems)
    end = _local_time(until, "Until", problems)
    if start and end and start >= end:
        problems.append("From must be before Until; the time range is left out.")
        start = end = None
    try:
        first = min(max(int(offset), 0), MAX_OFFSET)
    except ValueError:
        problems.append(f"Page offset {offset[:20]!r} is not a number; showing the newest.")
        first = 0
    entries: list[AuditRecord] | None = None
    next_offset = None
    try:
        page = await web.bookkeeper.audit(
            user=user, action=action, since=start, until=end, limit=PAGE_SIZE, offset=first
        )
        entries, next_offset = page.items, page.next_offset
    except BookkeeperRejected as exc:
        problems.append(f"The bookkeeper refused the filter: {exc.detail}")
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
    filters = {"user": user, "action": action, "since": since.strip(), "until": until.strip()}

    def page_href(**changes: Any) -> str:
        params = {k: v for k, v in {**filters, **changes}.items() if v not in ("", None, 0)}
        return url(request, "audit") + ("?" + urlencode(params) if params else "")

    context = {
        "entries": entries,
        "details": {entry.event_id: _details(entry) for entry in entries or []},
        "filters": filters,
        "filtered": any(filters.values()),
        "problems": problems,
        "offset": first,
        "unavailable": getattr(request.state, "bookkeeper_problem", None) is not None,
        "newer_href": page_href(offset=max(first - PAGE_SIZE, 0)) if first else "",
        "older_href": page_href(offset=next_offset) if next_offset else "",
        "user_href": lambda name: page_href(user=name, offset=0),
        "action_href": lambda name: page_href(action=name, offset=0),
        "known_actions": KNOWN_ACTIONS,
        "warning_actions": WARNING_ACTIONS,
        "time_zone": _time_zone(),
    }
    return render(request, "audit.html", context)
