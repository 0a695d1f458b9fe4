"""Templates: one Jinja2 environment, autoescaped everywhere, and what every page gets.

Every template sees ``request``, ``session`` (None when not signed in), ``csrf_token``,
``nav`` (the menu for the user's role), ``bookkeeper_problem`` (set when a call failed: the
layout shows a banner) and the helpers ``url(name, **params)`` (a path with the root path,
for links and hx-get) and ``static(path)``. Filters: ``when`` (a time shown in the server's
local time zone), ``ago`` (seconds or a time, as "12 s ago"), ``number`` (thousands
separated), ``size`` (bytes as MB/GB), ``person`` (a DICOM person name as ``DOE, JOHN``),
``dicom_date`` (``YYYYMMDD`` as ``YYYY-MM-DD``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.routing import NoMatchFound

from mercure import __version__
from mercure.webgui.context import web_context
from mercure.webgui.roles import Role
from mercure.webgui.sessions import Session

EMPTY = "\u2013"
"""Shown for a value that is not there (an en dash)."""

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("mercure.webgui", "templates"),
    autoescape=True,  # every template, whatever its name: DICOM text is never markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class NavItem(NamedTuple):
    """An entry of the main menu."""

    route: str
    label: str
    role: Role


NAV = (
    NavItem("overview", "Overview", Role.VIEWER),
    NavItem("queue", "Queue", Role.VIEWER),
    NavItem("search", "Search", Role.VIEWER),
    NavItem("logs", "Logs", Role.VIEWER),
    NavItem("rules", "Rules", Role.VIEWER),
    NavItem("targets", "Targets", Role.VIEWER),
    NavItem("modules", "Modules", Role.VIEWER),
    NavItem("notifications", "Notifications", Role.VIEWER),
    NavItem("sources", "Sources", Role.VIEWER),
    NavItem("settings", "Settings", Role.VIEWER),
    NavItem("config", "Configuration", Role.VIEWER),
    NavItem("upload", "Upload", Role.OPERATOR),
    NavItem("audit", "Audit", Role.ADMIN),
    NavItem("users", "Users", Role.ADMIN),
)
"""The menu. An entry shows once a route of that name exists and the user's role allows it,
so a new page appears in the menu by naming its main route (``name="queue"``)."""


def environment() -> jinja2.Environment:
    """The shared template environment (for filters and globals a page adds)."""
    return _ENV


def url(request: Request, name: str, **params: Any) -> str:
    """The path of the route ``name`` with the root path, e.g. ``/mercure/login``.

    Parameters are percent-encoded, so a value from DICOM or a peer (a UID, a task id) with
    ``/``, ``?`` or ``#`` in it makes a link that does not match rather than an error.
    """
    quoted = {k: quote(str(v), safe="") for k, v in params.items()}
    path = request.app.url_path_for(name, **quoted)
    return str(request.scope.get("root_path", "")) + str(path)


def static_url(request: Request, path: str) -> str:
    """The path of a static file, e.g. ``static_url(request, "app.css")``."""
    return str(request.scope.get("root_path", "")) + "/static/" + path


def _nav(request: Request, session: Session | None) -> list[dict[str, Any]]:
    if session is None:
        return []
    current = request.scope.get("route")
    items = []
    for item in NAV:
        if not session.role.allows(item.role):
            continue
        try:
            href = url(request, item.route)
        except NoMatchFound:
            continue
        active = current is not None and getattr(current, "name", None) == item.route
        items.append({"href": href, "label": item.label, "active": active})
    return items


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with the page context; an HTML response."""
    session: Session | None = getattr(request.state, "session", None)
    web = web_context(request)
    values: dict[str, Any] = {
        "request": request,
        "session": session,
        "csrf_token": session.csrf_token if session else "",
        "nav": _nav(request, session),
        "bookkeeper_problem": getattr(request.state, "bookkeeper_problem", None),
        "url": lambda name, **params: url(request, name, **params),
        "static": lambda path: static_url(request, path),
        "appliance": web.config.appliance_name,
        "version": __version__,
        "now": web.wall_clock(),
    }
    values.update(context or {})
    html = _ENV.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _when(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value.tzinfo is not None:
        value = value.astimezone()
    return value.strftime(fmt)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _number(value: int | float | None) -> str:
    if value is None:
        return EMPTY
    return f"{value:,.0f}".replace(",", "\u202f")  # a narrow no-break space between thousands


def _size(value: int | float | None) -> str:
    if value is None:
        return EMPTY
    for unit, factor in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value:.0f} B"


def _person(value: str | None) -> str:
    """A DICOM person name for people: ``DOE^JOHN^^DR`` as ``DOE, JOHN``."""
    if not value:
        return EMPTY
    alphabetic = value.split("=", 1)[0] or value
    parts = [part.strip() for part in alphabetic.split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    shown = f"{family}, {given}" if family and given else family or given
    return shown or value


def _dicom_date(value: str | None) -> str:
    """A DICOM date ``YYYYMMDD`` as ``YYYY-MM-DD`` (anything else as it is)."""
    if not value:
        return EMPTY
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


_ENV.filters.update(
    when=_when, ago=_ago, number=_number, size=_size, person=_person, dicom_date=_dicom_date
)
