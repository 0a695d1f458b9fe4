"""The web interface's pages over 1,000,000 bookkeeper events, and the cost of its live refresh.

For each backend (SQLite, PostgreSQL in a new database dropped afterwards) the bench fills the
bookkeeper's database with ``--events`` events (default 1,000,000: about 100,000 tasks over
30 days ending now) through the real ``ingest`` code (:func:`bench_bookkeeper_search.fill`),
puts task folders of those tasks with their ``task.json`` into a data folder (a few hundred in
``outgoing/`` and ``error/``, a few thousand in ``success/``), starts ``mercure bookkeeper``
and ``mercure webgui`` on them, makes a user with ``mercure user add`` and signs in over HTTP
like a browser (the sign-in form's CSRF token, then the session cookie). Then it measures:

- **pages**: each page ``--requests`` times (default 200) with varied parameters, the wall
  time of each request over loopback, p50 / p95 / max per page; a ``Server-Timing`` header is
  read when the application sends one. The overview and its fragments, the queue, search (by
  accession, patient ID and a one-day date range), a task's detail and a series' history.
  Pages are found by route name in the application's routers (else at their planned path); a
  page that answers 404 is reported "not built yet", so the bench runs before and after the
  pages are merged.
- **live refresh**: ``--tabs`` (default 20) signed-in tabs, each polling what the overview
  polls at the intervals its template and script set (read from them at start), for
  ``--tabs-seconds`` (default 120); the CPU time of the webgui process (``/proc/<pid>/stat``)
  in % of one core over that time, beside the same with no tab open.

    .venv/bin/python bench/bench_webgui.py [--backend both] [--events 1000000]
        [--in-success 3000] [--requests 200] [--tabs 20] [--tabs-seconds 120]

docs/performance.md has the figures; tests/bench/test_bench_webgui.py runs it at a tiny size.

Goals: every page p95 under 150 ms; 20 tabs cost the webgui process under 5 % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml
from bench_bookkeeper_ingest import PATIENTS, RULES, TARGETS, TOKEN, database
from bench_bookkeeper_search import SPAN, fill

import mercure.webgui
from mercure.bookkeeper import tables
from mercure.bookkeeper.database import create_database_engine
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.heartbeat import Heartbeat, write_heartbeat
from mercure.core.installed import installed_services
from mercure.core.task import (
    TargetStatus,
    Task,
    TaskDispatch,
    TaskInfo,
    TaskProcessing,
    fail_task,
    write_task,
)
from mercure.testing.installation import MercureProcess
from mercure.testing.ports import free_port
from mercure.webgui.pages import ROUTERS

GOAL_P95_MS = 150.0
GOAL_CPU_PERCENT = 5.0
USER, PASSWORD = "bench", "correct horse battery staple"
IN_QUEUE = {Stage.OUTGOING: 300, Stage.ERROR: 300}
"""Task folders put into each stage (fewer when the database has fewer such tasks); success/
gets ``--in-success`` (default 3,000)."""
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
PAGE_HEADERS = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
TEMPLATES = Path(mercure.webgui.__file__).with_name("templates")
STATIC = Path(mercure.webgui.__file__).with_name("static")


# --- the data folder -----------------------------------------------------------------------
@dataclass
class Filled:
    """What the bench put into the database and the data folder, to choose parameters from."""

    tasks: int
    events: int
    end: datetime
    in_queue: dict[Stage, list[str]] = field(default_factory=dict)
    series_uids: list[str] = field(default_factory=list)


def queued_tasks(url: str, wanted: dict[Stage, int]) -> dict[Stage, list[dict[str, Any]]]:
    """Rows of the newest tasks whose state fits each stage: waiting ones for outgoing/,
    failed ones for error/, done ones (``cleaned``) for success/."""
    states = {Stage.OUTGOING: "outgoing", Stage.ERROR: "error", Stage.SUCCESS: "cleaned"}
    engine = create_database_engine(url)
    t = tables.tasks
    found = {}
    with engine.connect() as connection:
        for stage, count in wanted.items():
            query = (
                sa.select(t.c.task_id, t.c.series_uid, t.c.patient_id, t.c.accession)
                .where(t.c.state == states[stage])
                .order_by(t.c.created_at.desc())
                .limit(count)
            )
            found[stage] = [dict(row._mapping) for row in connection.execute(query)]
    engine.dispose()
    return found


def task_document(row: dict[str, Any], stage: Stage, now: datetime) -> Task:
    """A task.json as the router and dispatcher write it for a task of the synthetic data."""
    number = int(row["task_id"].rsplit("-", 1)[1])
    rule = RULES[number % len(RULES)]
    targets = [TARGETS[number % len(TARGETS)], TARGETS[(number + 3) % len(TARGETS)]]
    status = {
        Stage.SUCCESS: {
            t: TargetStatus(state="complete", time=now, instances_sent=40) for t in targets
        },
        Stage.ERROR: {
            t: TargetStatus(state="error", time=now, retries=3, reason="association rejected")
            for t in targets
        },
        Stage.OUTGOING: {
            targets[0]: TargetStatus(state="complete", time=now, instances_sent=40),
            targets[1]: TargetStatus(
                state="waiting",
                retries=2,
                next_retry_at=now + timedelta(minutes=5),
                reason="connection refused",
                instances_sent=12,
            ),
        },
    }[stage]
    return Task(
        id=row["task_id"],
        info=TaskInfo(
            action="both",
            uid=row["series_uid"],
            triggered_rules={rule: True},
            applied_rule=rule,
            mrn=row["patient_id"],
            acc=row["accession"],
            sender_aet="CT01",
            receiver_aet="MERCURE",
            sender_address="10.0.0.17",
        ),
        dispatch=TaskDispatch(target_name=targets, status=status),
        process=[TaskProcessing(module_name="anonymizer", settings={"level": 2})],
    )


def fill_data_folder(
    data: DataFolder, url: str, now: datetime, in_success: int
) -> dict[Stage, list[str]]:
    """Task folders (task.json and a few small instance files) of tasks in the database."""
    data.ensure()
    placed: dict[Stage, list[str]] = {}
    for stage, rows in queued_tasks(url, {**IN_QUEUE, Stage.SUCCESS: in_success}).items():
        placed[stage] = []
        instances = 2 if stage == Stage.SUCCESS else 8
        for row in rows:
            folder = data.stage(Stage.OUTGOING) / row["task_id"]
            folder.mkdir()
            for n in range(instances):
                (folder / f"{n:04d}.dcm").write_bytes(b"\0" * 4096)
            write_task(folder, task_document(row, stage, now))
            if stage == Stage.ERROR:
                fail_task(
                    folder,
                    data,
                    stage="dispatch",
                    service="dispatcher",
                    reason="target_3: association rejected (C-STORE status 0xA700)",
                )
            elif stage == Stage.SUCCESS:
                folder.rename(data.stage(Stage.SUCCESS) / row["task_id"])
            placed[stage].append(row["task_id"])
    return placed


def write_heartbeats(data: DataFolder, skip: set[str]) -> None:
    """Heartbeats of the services the bench does not run, so the overview shows them up."""
    now = datetime.now(UTC)
    for name in ["supervisor", *installed_services()]:
        if name in skip:
            continue
        beat = Heartbeat(
            service=name,
            instance="main",
            host=socket.gethostname(),
            pid=os.getpid(),
            state="running",
            started_at=now,
            time=now,
            interval=3600,
        )
        write_heartbeat(data.run_dir, beat)


# --- the services ----------------------------------------------------------------------------
def write_config(folder: Path, database_url: str, bookkeeper_port: int, webgui_port: int) -> Path:
    """``mercure.yaml`` for the bookkeeper and the web interface of the bench."""
    path = folder / "mercure.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(folder / "data"),
                "logging": {"level": "WARNING"},
                "bookkeeper": {
                    "host": "127.0.0.1",
                    "port": bookkeeper_port,
                    "api_key": TOKEN,
                    "database_url": database_url,
                },
                "webgui": {"host": "127.0.0.1", "port": webgui_port},
            }
        )
    )
    return path


def add_user(config: Path) -> None:
    """``mercure user add bench --role admin --password-stdin`` (admins see every page)."""
    command = f"user add {USER} --role admin --password-stdin --config {config}"
    subprocess.run(
        [sys.executable, "-m", "mercure", *command.split()],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )


@contextlib.contextmanager
def services(config: Path) -> Iterator[tuple[MercureProcess, MercureProcess, str]]:
    """``mercure bookkeeper`` and ``mercure webgui`` running; (bookkeeper, webgui, its URL)."""
    settings = yaml.safe_load(config.read_text())
    bookkeeper_port, webgui_port = settings["bookkeeper"]["port"], settings["webgui"]["port"]
    bookkeeper = MercureProcess(
        "bookkeeper",
        config,
        listen_port=bookkeeper_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    webgui = MercureProcess("webgui", config, listen_port=webgui_port)
    with bookkeeper, webgui:
        yield bookkeeper, webgui, f"http://127.0.0.1:{webgui_port}"


def sign_in(base_url: str) -> tuple[httpx.Client, str]:
    """A client signed in through the sign-in form, and the session's CSRF token."""
    client = httpx.Client(
        base_url=base_url,
        timeout=60,
        transport=httpx.HTTPTransport(socket_options=NODELAY),
        headers=PAGE_HEADERS,
    )
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token is None:
        raise SystemExit(f"no sign-in form at {base_url}/login ({form.status_code})")
    answer = client.post(
        "/login",
        data={"csrf_token": token[1], "next": "", "name": USER, "password": PASSWORD},
    )
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed ({answer.status_code}): {answer.text[:300]}")
    page = client.get("/")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    if csrf is None:
        raise SystemExit(f"the overview has no CSRF token ({page.status_code})")
    return client, csrf[1]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- pages -----------------------------------------------------------------------------------
@functools.cache
def route_paths() -> dict[str, tuple[str, list[str]]]:
    """Each named route of the web interface: (path template, names of its path parameters)."""
    paths = {}
    for router in ROUTERS:
        for route in router.routes:
            name, path = getattr(route, "name", None), getattr(route, "path", None)
            if name and path:
                paths[name] = (path, re.findall(r"{(\w+)(?::\w+)?}", path))
    return paths


def page_path(names: tuple[str, ...], planned: str, value: str = "") -> str:
    """The path of the first route called one of ``names``, else ``planned``, with its one path
    parameter (if any) set to ``value``."""
    routes = route_paths()
    for name in names:
        if name in routes:
            path, params = routes[name]
            break
    else:
        path, params = planned, re.findall(r"{(\w+)}", planned)
    for param in params:
        path = re.sub(r"{" + param + r"(?::\w+)?}", value, path)
    return path


Request = tuple[str, dict[str, str], dict[str, str]]
"""(path, query parameters, headers) of one request."""


@dataclass
class Page:
    """A page or fragment to time, and how to make each request of it."""

    name: str
    make: Callable[[random.Random], Request]


def htmx_headers(csrf: str, target: str) -> dict[str, str]:
    """What htmx (with static/app.js) sends on an automatic refresh of ``#target``."""
    return {
        "HX-Request": "true",
        "HX-Target": target,
        "HX-Trigger": target,
        "HX-Current-URL": "/",
        "X-Mercure-Poll": "1",
        "X-CSRF-Token": csrf,
        "Accept": "*/*",
    }


CHART_HEADERS = {"Accept": "application/json", "X-Mercure-Poll": "1"}


def pages(filled: Filled, csrf: str) -> list[Page]:
    """The pages of issue 13 with generators of varied, matching parameters."""
    start = filled.end - SPAN
    queued = [
        task
        for stage in (Stage.OUTGOING, Stage.ERROR, Stage.SUCCESS)
        for task in filled.in_queue.get(stage, [])
    ]

    def number(rng: random.Random) -> int:
        return rng.randrange(filled.tasks)

    def day(rng: random.Random) -> dict[str, str]:
        first = (start + (filled.end - start) * rng.random()).date()
        return {"since": first.isoformat(), "until": (first + timedelta(days=1)).isoformat()}

    def queue(rng: random.Random) -> Request:
        choice = rng.choice(
            [
                {},
                {"stage": "outgoing"},
                {"stage": "error"},
                {"stage": "success"},
                {"rule": rng.choice(RULES)},
            ]
        )
        return page_path(("queue",), "/queue"), choice, PAGE_HEADERS

    def search(
        params: Callable[[random.Random], dict[str, str]],
    ) -> Callable[[random.Random], Request]:
        return lambda rng: (page_path(("search",), "/search"), params(rng), PAGE_HEADERS)

    def task(rng: random.Random) -> Request:
        task_id = rng.choice(queued)
        names = ("queue_task", "task", "task_detail")
        return page_path(names, "/queue/tasks/{task_id}", task_id), {}, PAGE_HEADERS

    def series(rng: random.Random) -> Request:
        uid = rng.choice(filled.series_uids)
        names = ("search_series", "series", "series_history")
        return page_path(names, "/search/series/{series_uid}", uid), {}, PAGE_HEADERS

    return [
        Page("overview /", lambda r: (page_path(("overview",), "/"), {}, PAGE_HEADERS)),
        Page(
            "  fragment services",
            lambda r: (
                page_path(("overview_services",), "/overview/services"),
                {},
                htmx_headers(csrf, "local"),
            ),
        ),
        Page(
            "  fragment throughput",
            lambda r: (
                page_path(("overview_throughput",), "/overview/throughput"),
                {},
                htmx_headers(csrf, "throughput"),
            ),
        ),
        Page(
            "  chart.json",
            lambda r: (page_path(("overview_chart",), "/overview/chart.json"), {}, CHART_HEADERS),
        ),
        Page("queue /queue", queue),
        Page("search by accession", search(lambda r: {"accession": f"ACC{number(r):08d}"})),
        Page(
            "search by patient ID",
            search(lambda r: {"patient_id": f"PAT{r.randrange(PATIENTS):05d}"}),
        ),
        Page("search by date (1 day)", search(day)),
        Page("task detail", task),
        Page("series history", series),
    ]


@dataclass
class Timing:
    """The times of one page, or why there are none."""

    wall: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    """``Server-Timing`` durations, when the application sent them."""
    statuses: Counter[int] = field(default_factory=Counter)
    missing: str = ""

    def percentiles(self, values: list[float]) -> tuple[float, float, float]:
        """(p50, p95, max) in ms."""
        ordered = sorted(values)
        p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
        return ordered[len(ordered) // 2], p95, ordered[-1]


def server_timing(header: str | None) -> float | None:
    """The ``total`` duration of a Server-Timing header, else its largest one (ms)."""
    if not header:
        return None
    durations = {}
    for metric in header.split(","):
        name, _, rest = metric.strip().partition(";")
        found = re.search(r"dur=([\d.]+)", rest)
        if found:
            durations[name] = float(found[1])
    if not durations:
        return None
    return durations.get("total", max(durations.values()))


def time_page(client: httpx.Client, page: Page, requests: int, rng: random.Random) -> Timing:
    """``requests`` requests of ``page`` one after another (after one untimed warm-up)."""
    timing = Timing()
    path, params, headers = page.make(rng)
    first = client.get(path, params=params, headers=headers)
    if first.status_code == 404:
        timing.missing = "not built yet (404)"
        return timing
    for _ in range(requests):
        path, params, headers = page.make(rng)
        started = time.perf_counter()
        response = client.get(path, params=params, headers=headers)
        timing.wall.append((time.perf_counter() - started) * 1000)
        timing.statuses[response.status_code] += 1
        server = server_timing(response.headers.get("server-timing"))
        if server is not None:
            timing.server.append(server)
    return timing


# --- live refresh ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Poll:
    """One thing an open overview polls: its route, every ``interval`` seconds."""

    route: str
    interval: float
    target: str
    """The element htmx swaps (empty: a script's fetch)."""


def overview_polls() -> list[Poll]:
    """What an open overview tab polls, as its template (htmx) and script (the chart) say."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    template = (TEMPLATES / "overview.html").read_text()
    polls = []
    for tag in re.findall(r"<[^>]*hx-trigger=\"every [^>]*>", template):
        route = re.search(r"hx-get=\"\{\{ url\('(\w+)'\) \}\}\"", tag)
        every = re.search(r"hx-trigger=\"every ([\d.]+)(ms|s|m)\"", tag)
        target = re.search(r"id=\"([\w-]+)\"", tag)
        if not (route and every and target):
            raise SystemExit(f"cannot read the polling of {tag} in overview.html")
        polls.append(Poll(route[1], float(every[1]) * units[every[2]], target[1]))
    chart = re.search(r"data-src=\"\{\{ url\('(\w+)'\) \}\}\"", template)
    refresh = re.search(r"REFRESH_MS = ([\d\s*]+);", (STATIC / "overview.js").read_text())
    if not (polls and chart and refresh):
        raise SystemExit("cannot read the overview's polling from overview.html / overview.js")
    milliseconds = 1
    for factor in refresh[1].split("*"):
        milliseconds *= int(factor)
    polls.append(Poll(chart[1], milliseconds / 1000, ""))
    return polls


@dataclass
class RefreshCost:
    """CPU of the services while ``tabs`` overview tabs stayed open."""

    tabs: int
    seconds: float
    webgui_percent: float
    bookkeeper_percent: float
    requests: Counter[str] = field(default_factory=Counter)
    """Per route and status, e.g. ``overview_services 200``."""


async def _tab(
    client: httpx.AsyncClient,
    polls: list[Poll],
    csrf: str,
    until: float,
    rng: random.Random,
    requests: Counter[str],
) -> None:
    """One open overview tab: every poll at its interval, from a random phase (tabs were opened
    at different times), until ``until`` (event-loop time)."""
    loop = asyncio.get_running_loop()

    async def poll(each: Poll) -> None:
        path = page_path((each.route,), "/")
        headers = htmx_headers(csrf, each.target) if each.target else CHART_HEADERS
        due = loop.time() + rng.uniform(0, each.interval)
        while due < until:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                response = await client.get(path, headers=headers)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # The server closed the kept-alive connection as this request went out (its
                # keep-alive timeout is the polling interval); a browser sends it again.
                requests[f"{each.route} resent"] += 1
                response = await client.get(path, headers=headers)
            requests[f"{each.route} {response.status_code}"] += 1
            due += each.interval

    await asyncio.gather(*(poll(each) for each in polls))


def refresh_cost(
    base_url: str, tabs: int, seconds: float, webgui: MercureProcess, bookkeeper: MercureProcess
) -> RefreshCost:
    """Open ``tabs`` signed-in overview tabs for ``seconds``; the services' CPU meanwhile."""
    polls = overview_polls()
    signed_in = [sign_in(base_url) for _ in range(tabs)]
    requests: Counter[str] = Counter()

    async def run() -> float:
        loop = asyncio.get_running_loop()
        clients = [
            httpx.AsyncClient(
                base_url=base_url,
                cookies=client.cookies,
                timeout=60,
                transport=httpx.AsyncHTTPTransport(socket_options=NODELAY),
            )
            for client, _csrf in signed_in
        ]
        rng = random.Random(13)
        started = loop.time()
        try:
            await asyncio.gather(
                *(
                    _tab(c, polls, csrf, started + seconds, rng, requests)
                    for c, (_, csrf) in zip(clients, signed_in, strict=True)
                ),
                asyncio.sleep(seconds),
            )
        finally:
            for client in clients:
                await client.aclose()
        return loop.time() - started

    webgui_before, bookkeeper_before = cpu_seconds(webgui.pid), cpu_seconds(bookkeeper.pid)
    elapsed = asyncio.run(run())
    webgui_used = cpu_seconds(webgui.pid) - webgui_before
    bookkeeper_used = cpu_seconds(bookkeeper.pid) - bookkeeper_before
    for client, _csrf in signed_in:
        client.close()
    return RefreshCost(
        tabs, elapsed, 100 * webgui_used / elapsed, 100 * bookkeeper_used / elapsed, requests
    )


# --- one backend -----------------------------------------------------------------------------
@dataclass
class BackendResult:
    """Everything measured on one database."""

    filled: Filled
    pages: dict[str, Timing]
    refresh: list[RefreshCost]


def run_backend(backend: str, args: argparse.Namespace) -> BackendResult:
    """Fill, start, sign in and measure on one database."""
    end = datetime.now(UTC).replace(microsecond=0)
    with (
        tempfile.TemporaryDirectory(prefix="bench-webgui-") as tmp,
        database(backend, Path(tmp)) as url,
    ):
        folder = Path(tmp)
        print(f"{backend}: filling the bookkeeper with {args.events:,} events", flush=True)
        started = time.perf_counter()
        tasks, _task_events, events = fill(url, args.events, end, count_all=True)
        print(
            f"  {tasks:,} tasks, {events:,} events in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        data = DataFolder(folder / "data")
        filled = Filled(tasks, events, end, fill_data_folder(data, url, end, args.in_success))
        filled.series_uids = [
            f"1.2.826.0.1.3680043.10.543.7.{n}"
            for n in random.Random(3).sample(range(tasks), min(tasks, 1000))
        ]
        print(
            "  data folder: "
            + ", ".join(
                f"{len(ids):,} tasks in {stage}/" for stage, ids in filled.in_queue.items()
            ),
            flush=True,
        )
        write_heartbeats(data, skip={"bookkeeper", "webgui"})
        config = write_config(folder, url, free_port(), free_port())
        add_user(config)
        with services(config) as (bookkeeper, webgui, base_url):
            client, csrf = sign_in(base_url)
            rng = random.Random(7)
            timings = {}
            for page in pages(filled, csrf):
                timings[page.name] = timing = time_page(client, page, args.requests, rng)
                print(f"  {page.name:<24} {describe(timing)}", flush=True)
            client.close()
            refresh = []
            for tabs in (0, args.tabs):
                print(f"  {tabs} tabs open for {args.tabs_seconds:g} s ...", flush=True)
                cost = refresh_cost(base_url, tabs, args.tabs_seconds, webgui, bookkeeper)
                print(
                    f"    webgui {cost.webgui_percent:.2f} % of one core, "
                    f"bookkeeper {cost.bookkeeper_percent:.2f} %; "
                    f"{sum(cost.requests.values()):,} requests "
                    f"({', '.join(f'{k}: {v}' for k, v in sorted(cost.requests.items()))})",
                    flush=True,
                )
                refresh.append(cost)
        return BackendResult(filled, timings, refresh)


def describe(timing: Timing) -> str:
    """p50 / p95 / max of one page on one line, or why it has none."""
    if timing.missing:
        return timing.missing
    p50, p95, worst = timing.percentiles(timing.wall)
    text = f"p50 {p50:6.1f}  p95 {p95:6.1f}  max {worst:6.1f} ms"
    if timing.server:
        s50, s95, _ = timing.percentiles(timing.server)
        text += f"  (Server-Timing p50 {s50:.1f}, p95 {s95:.1f})"
    bad = {status: n for status, n in timing.statuses.items() if status >= 400}
    if bad:
        text += f"  answers {dict(timing.statuses)}"
    return text


# --- the report ------------------------------------------------------------------------------
def report(results: dict[str, BackendResult], args: argparse.Namespace) -> None:
    """The pages and the refresh cost of every backend side by side."""
    backends = list(results)
    print()
    print(f"web interface, {args.requests} requests per page, wall time over loopback (ms)")
    header = f"{'page':<24}" + "".join(
        f" | {b + ' p50':>15} {'p95':>7} {'max':>7}" for b in backends
    )
    print(header + f" | goal p95 < {GOAL_P95_MS:g}")
    print("-" * len(header) + "-" * 20)
    for name in results[backends[0]].pages:
        row, verdicts = f"{name:<24}", []
        for backend in backends:
            timing = results[backend].pages[name]
            if timing.missing:
                row += f" | {'not built yet':>31}"
                continue
            p50, p95, worst = timing.percentiles(timing.wall)
            row += f" | {p50:15.1f} {p95:7.1f} {worst:7.1f}"
            failed = sum(n for status, n in timing.statuses.items() if status >= 400)
            verdicts.append(
                "SLOW" if p95 >= GOAL_P95_MS else f"{failed} errors" if failed else "ok"
            )
        print(row + " | " + (", ".join(sorted(set(verdicts))) if verdicts else ""))
    if any(t.server for r in results.values() for t in r.pages.values()):
        print("(the application sent Server-Timing; see the lines above)")
    else:
        print("(the application sends no Server-Timing header: wall time only)")
    print()
    print(f"live refresh: CPU of the webgui process in % of one core over {args.tabs_seconds:g} s")
    print(f"{'open overview tabs':<24}" + "".join(f" | {b:>12}" for b in backends) + " | goal")
    for index, tabs in enumerate((0, args.tabs)):
        row = f"{tabs:<3} {'(idle)' if tabs == 0 else 'tabs':<20}"
        values = [results[b].refresh[index] for b in backends]
        row += "".join(f" | {v.webgui_percent:10.2f} %" for v in values)
        if tabs:
            worst = max(v.webgui_percent for v in values)
            row += f" | < {GOAL_CPU_PERCENT:g} %: " + ("ok" if worst < GOAL_CPU_PERCENT else "OVER")
        print(row)
    row = f"{'bookkeeper at ' + str(args.tabs) + ' tabs':<24}"
    print(row + "".join(f" | {results[b].refresh[1].bookkeeper_percent:10.2f} %" for b in backends))
    polls = ", ".join(f"{p.route} every {p.interval:g} s" for p in overview_polls())
    print(f"each tab polls {polls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the database")
    parser.add_argument(
        "--in-success", type=int, default=3000, help="task folders in success/ (retained)"
    )
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--tabs", type=int, default=20, help="open overview tabs")
    parser.add_argument("--tabs-seconds", type=float, default=120.0, help="seconds tabs stay open")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    results = {backend: run_backend(backend, args) for backend in backends}
    report(results, args)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (1 minute)")


if __name__ == "__main__":
    main()
