"""The overview: is everything running, how full are the queues and the disk, what went
through in the last hour and day, and what failed lately.

The page renders everything at once (it works without JavaScript) and then refreshes its
parts with htmx: services and queues every 5 s (from the data folder, so they keep working
while the bookkeeper is down), throughput and recent errors every 30 s, the 7-day chart
(JSON for uPlot, drawn by static/overview.js) every 5 minutes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mercure.webgui.auth import ViewerSession
from mercure.webgui.bookkeeper import BookkeeperError, EventRecord, StatisticsBucket
from mercure.webgui.context import web_context
from mercure.webgui.overview import (
    chart_since,
    disk_status,
    hour_start,
    service_statuses,
    stage_statuses,
)
from mercure.webgui.rendering import render

router = APIRouter()

RECENT_ERRORS = 8


async def _local_context(request: Request) -> dict[str, Any]:
    # File-system reads (a data folder on slow network storage must not stall the event loop).
    return await run_in_threadpool(_read_local, request)


def _read_local(request: Request) -> dict[str, Any]:
    web = web_context(request)
    now = web.wall_clock()
    services = service_statuses(web.data, web.config, now)
    return {
        "services": services,
        # The supervisor is shown with them but not counted: "seven services" are the pipeline.
        "services_up": sum(1 for s in services if s.state == "up" and s.name != "supervisor"),
        "services_wanted": sum(1 for s in services if s.state != "off" and s.name != "supervisor"),
        "stages": stage_statuses(web.data, web.stage_counter),
        "disk": disk_status(web.data, web.config),
    }


def _sum(buckets: list[StatisticsBucket], field: str) -> int:
    return sum(int(getattr(bucket, field)) for bucket in buckets)


async def _throughput_context(request: Request) -> dict[str, Any]:
    web = web_context(request)
    now = web.wall_clock()
    this_hour = hour_start(now)
    try:
        statistics, recent = await asyncio.gather(
            web.bookkeeper.statistics("hour", this_hour - timedelta(hours=23)),
            web.bookkeeper.events(
                severity="error", since=now - timedelta(days=1), limit=RECENT_ERRORS
            ),
        )
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
        return {"throughput": None, "recent_errors": None}
    day = statistics.buckets
    hour = [bucket for bucket in day if bucket.start >= this_hour]
    fields = ("instances_received", "instances_dispatched", "tasks_completed", "tasks_failed")
    throughput = {
        "hour": {field: _sum(hour, field) for field in fields},
        "day": {field: _sum(day, field) for field in fields},
        "hour_since": this_hour,
        "day_since": day[0].start if day else this_hour,
    }
    errors: list[EventRecord] = recent.items
    return {"throughput": throughput, "recent_errors": errors}


@router.get("/", name="overview")
async def overview(request: Request, _session: ViewerSession) -> Response:
    """The whole overview page."""
    # The data folder (in a thread) and the bookkeeper (two calls) are read at the same time.
    local, throughput = await asyncio.gather(_local_context(request), _throughput_context(request))
    return render(request, "overview.html", {**local, **throughput})


@router.get("/overview/services", name="overview_services")
async def services_fragment(request: Request, _session: ViewerSession) -> Response:
    """The services and queues (fragment, refreshed every few seconds)."""
    return render(request, "overview/_local.html", await _local_context(request))


@router.get("/overview/throughput", name="overview_throughput")
async def throughput_fragment(request: Request, _session: ViewerSession) -> Response:
    """Throughput figures and recent errors (fragment)."""
    return render(request, "overview/_throughput.html", await _throughput_context(request))


@router.get("/overview/chart.json", name="overview_chart")
async def chart_data(request: Request, _session: ViewerSession) -> Response:
    """Instances received and dispatched per hour over 7 days, as uPlot's columns."""
    web = web_context(request)
    try:
        statistics = await web.bookkeeper.statistics("hour", chart_since(web.wall_clock()))
    except BookkeeperError as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    buckets = statistics.buckets
    return JSONResponse(
        {
            "x": [int(bucket.start.timestamp()) for bucket in buckets],
            "received": [bucket.instances_received for bucket in buckets],
            "dispatched": [bucket.instances_dispatched for bucket in buckets],
        }
    )
