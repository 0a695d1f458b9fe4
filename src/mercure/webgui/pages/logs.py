"""The logs page: the last lines of a service's log file, a level and text filter, a live tail.

The files are the services' own (``data_dir/logs/<service>.log``, rotated; see
:mod:`mercure.webgui.logs`). The live tail is an htmx poller that asks for the lines written
since a position (inode and offset) and replaces itself with them and a poller for the next
position, so the page never reads a file twice and survives rotation. A service without a file
(``logging.files: false``, or not run on this host) gets a note saying where its log is.

Viewers may choose the debug level, where patient data may appear: the viewer role reads
patient data on every other page too, and secrets are masked in every log line when written.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mercure.core.logs import LogPosition
from mercure.webgui.auth import ViewerSession
from mercure.webgui.context import web_context
from mercure.webgui.logs import (
    DEFAULT_LEVEL,
    DEFAULT_LINES,
    LEVELS,
    MAX_FILTER,
    MAX_LINES,
    TAIL_BYTES,
    LogSource,
    last_records,
    log_folder,
    log_sources,
    tail_step,
)
from mercure.webgui.rendering import render, url

router = APIRouter()

POLL_SECONDS = 2


def _default_service(sources: list[LogSource]) -> str:
    """The router's log if there is one, else the first file, else the supervisor."""
    with_files = [s.name for s in sources if s.path is not None]
    if "router" in with_files:
        return "router"
    return with_files[0] if with_files else "supervisor"


def _filters(level: str, lines: int | str, q: str) -> tuple[str, int, str, list[str]]:
    """The filters made valid, and what was wrong with the ones asked for."""
    problems = []
    if level not in LEVELS:
        problems.append(f"Level {level[:20]!r} is not one of {', '.join(LEVELS)}; showing info.")
        level = DEFAULT_LEVEL
    try:
        count = int(lines)
    except ValueError:
        problems.append(f"Lines {str(lines)[:20]!r} is not a number; showing {DEFAULT_LINES}.")
        count = DEFAULT_LINES
    if not 1 <= count <= MAX_LINES:
        problems.append(f"Lines must be 1 to {MAX_LINES}; showing {min(max(count, 1), MAX_LINES)}.")
        count = min(max(count, 1), MAX_LINES)
    if len(q) > MAX_FILTER:
        problems.append(f"The text filter is cut to {MAX_FILTER} characters.")
        q = q[:MAX_FILTER]
    return level, count, q, problems


def _page_href(request: Request, **params: Any) -> str:
    return url(request, "logs") + "?" + urlencode(params)


def _tail_href(request: Request, service: str, level: str, q: str, position: LogPosition) -> str:
    params = {"service": service, "level": level, "q": q}
    params.update(inode=str(position.inode), offset=str(position.offset))
    return url(request, "logs_tail") + "?" + urlencode(params)


@router.get("/logs", name="logs")
async def logs_page(
    request: Request,
    _session: ViewerSession,
    service: str = "",
    level: str = DEFAULT_LEVEL,
    lines: str = str(DEFAULT_LINES),
    q: str = "",
    live: str = "1",
) -> Response:
    """A service's last log lines, filtered, with a live tail."""
    web = web_context(request)
    sources = await run_in_threadpool(log_sources, web.config)
    level, count, q, problems = _filters(level, lines, q)
    by_name = {s.name: s for s in sources}
    status_code = 200
    if not service:
        service = _default_service(sources)
    elif service not in by_name:
        problems.insert(0, f"There is no log of a service {service[:64]!r}; choose one above.")
        service, status_code = _default_service(sources), 404
    source = by_name[service]
    is_live = live == "1"
    view = None
    if source.path is not None:
        view = await run_in_threadpool(last_records, source.path, count, level, q)
    keep = {"level": level, "lines": count, "q": q, "live": "1" if is_live else "0"}
    context = {
        "sources": [
            {
                "source": s,
                "href": _page_href(request, **{**keep, "service": s.name}),
                "active": s.name == service,
            }
            for s in sources
        ],
        "service": service,
        "source": source,
        "records": view.records if view else [],
        "tail_url": _tail_href(request, service, level, q, view.position) if view else "",
        "behind": 0,
        "level": level,
        "levels": LEVELS,
        "lines": count,
        "max_lines": MAX_LINES,
        "q": q,
        "max_filter": MAX_FILTER,
        "live": is_live and view is not None,
        "live_href": _page_href(request, **{**keep, "service": service, "live": "0"}),
        "resume_href": _page_href(request, **{**keep, "service": service, "live": "1"}),
        "problems": problems,
        "files_on": web.config.logging.files,
        "folder": log_folder(web.config),
        "tail_mb": TAIL_BYTES >> 20,
        "poll_seconds": POLL_SECONDS,
    }
    return render(request, "logs.html", context, status_code=status_code)


@router.get("/logs/tail", name="logs_tail")
async def logs_tail(
    request: Request,
    _session: ViewerSession,
    service: str = "",
    level: str = DEFAULT_LEVEL,
    q: str = "",
    inode: int = Query(0, ge=0),
    offset: int = Query(0, ge=0),
) -> Response:
    """The live tail (fragment): the lines written since ``inode``/``offset`` and the poller
    that asks for the ones after them."""
    web = web_context(request)
    level, _, q, _ = _filters(level, DEFAULT_LINES, q)
    sources = {s.name: s for s in await run_in_threadpool(log_sources, web.config)}
    source = sources.get(service)
    if source is None:
        return Response(f"There is no log of a service {service[:64]!r}.", status_code=404)
    position = LogPosition(inode, offset)
    if source.path is None:
        # The file is gone for now (removed, or between rotation steps): ask again later.
        records, behind = [], 0
    else:
        step = await run_in_threadpool(tail_step, source.path, position, level, q)
        records, position, behind = step.records, step.position, step.behind
    context = {
        "records": records,
        "tail_url": _tail_href(request, service, level, q, position),
        "behind": behind,
        "poll_seconds": POLL_SECONDS,
    }
    return render(request, "logs/_tail.html", context)
