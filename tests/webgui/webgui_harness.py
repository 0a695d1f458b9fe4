"""The web interface on a real bookkeeper application, in process, for the tests.

- :class:`FakeClock`: the monotonic clock of sessions and throttling; tests move it.
- :class:`WebGui`: the app with its context, a data folder, an outbox and the bookkeeper
  (the real application with its user store, on a SQLite database; argon2 with cheap
  parameters so that the many sign-ins of the route enumeration stay fast).
- :func:`sign_in`: a TestClient signed in through the real sign-in form.
- :func:`csrf_of`: the session's CSRF token as the pages carry it.
- :func:`assert_inert`: HTML in which injected markup stayed text.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn
import yaml
from argon2 import PasswordHasher
from fastapi import FastAPI
from starlette.types import ASGIApp

from mercure.bookkeeper.app import create_app as create_bookkeeper_app
from mercure.bookkeeper.database import create_database_engine, migrate
from mercure.bookkeeper.ingest import ingest
from mercure.bookkeeper.users import UserStore
from mercure.core.clock import utcnow
from mercure.core.config import validate_document
from mercure.core.datafolder import DataFolder
from mercure.core.events import Event, EventClient, Outbox, read_segment
from mercure.core.heartbeat import Heartbeat, write_heartbeat
from mercure.core.installed import installed_services
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until
from mercure.webgui.app import asgi_app, create_app
from mercure.webgui.bookkeeper import BookkeeperClient
from mercure.webgui.context import WebContext
from mercure.webgui.sessions import CookieSigner, SessionStore
from mercure.webgui.settings import WebSettings
from mercure.webgui.throttle import LoginThrottle

TOKEN = "webgui-test-bookkeeper-key"
PASSWORD = "correct horse battery staple"
XSS_PAYLOADS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


class WebGui:
    """The web interface of one test, on a real (in-process) bookkeeper."""

    def __init__(
        self,
        folder: Path,
        *,
        webgui: dict[str, object] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.folder = folder
        document = {"data_dir": str(folder / "data"), "webgui": webgui or {}, **(extra or {})}
        # The file the configuration pages edit (they save through mercure.core.config.editing).
        self.config_path = folder / "mercure.yaml"
        self.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        loaded = validate_document(document, base_dir=folder)
        self.config = loaded.config
        self.data = DataFolder(self.config.data_dir)
        self.data.ensure()
        self.engine = create_database_engine(f"sqlite:///{folder / 'bookkeeper.sqlite3'}")
        migrate(self.engine)
        self.users = UserStore(
            self.engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        )
        self.bookkeeper_app: FastAPI = create_bookkeeper_app(
            self.engine, api_key=TOKEN, users=self.users
        )
        self.bookkeeper_down = False
        self.outbox = Outbox(self.data.outbox_dir, "webgui@test")
        self.clock = FakeClock()
        settings = WebSettings.from_config(self.config.webgui)
        self.context = WebContext(
            config=self.config,
            settings=settings,
            data=self.data,
            bookkeeper=BookkeeperClient(
                "http://bookkeeper", lambda: TOKEN, transport=self._transport()
            ),
            events=EventClient(self.outbox, "webgui", "test"),
            signer=CookieSigner("test-session-key-0123456789abcdef"),
            sessions=SessionStore(
                idle_timeout=settings.idle_timeout, max_age=settings.max_age, clock=self.clock
            ),
            throttle=LoginThrottle(clock=self.clock),
            config_path=self.config_path,
            clock=self.clock,
        )
        self.app = create_app(self.context)
        self.asgi: ASGIApp = asgi_app(self.app, self.context)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _transport(self) -> httpx.AsyncBaseTransport:
        inner = httpx.ASGITransport(app=self.bookkeeper_app)
        harness = self

        class Switchable(httpx.AsyncBaseTransport):
            """The bookkeeper, or a refused connection while ``bookkeeper_down``."""

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if harness.bookkeeper_down:
                    raise httpx.ConnectError("connection refused", request=request)
                return await inner.handle_async_request(request)

        return Switchable()

    def start(self) -> str:
        """Serve the app with uvicorn on a loopback port (once); its base URL."""
        if self._server is None:
            self.port = free_port()
            config = uvicorn.Config(
                self.asgi,
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="off",
                proxy_headers=False,
            )
            self._server = _ThreadServer(config)
            self._thread = threading.Thread(target=self._server.run, daemon=True)
            self._thread.start()
            server = self._server
            wait_until(lambda: server.started, timeout=10, message="webgui uvicorn start")
        return self.url

    @property
    def url(self) -> str:
        """Base URL of the running app."""
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        """A new browser (own cookies) on the running app; close it after use."""
        return httpx.Client(base_url=self.start(), timeout=10)

    def add_user(self, name: str, role: str, password: str = PASSWORD) -> None:
        """A user in the bookkeeper's user store."""
        self.users.create(name, role, password, actor="test", remote_address=None)

    def store_events(self, events: list[Event]) -> None:
        """Put events into the real bookkeeper's database."""
        ingest(self.engine, events)

    def beat_all(self, *, detail: str = "", instance: str = "test") -> None:
        """A fresh heartbeat of every service and the supervisor, from this (live) process."""
        now = utcnow()
        for name in ["supervisor", *installed_services()]:
            write_heartbeat(
                self.data.run_dir,
                Heartbeat(
                    service=name,
                    instance=instance,
                    host=os.uname().nodename,
                    pid=os.getpid(),
                    state="running",
                    started_at=now,
                    time=now,
                    interval=5.0,
                    detail=detail,
                ),
            )

    def written_events(self) -> list[Event]:
        """Every event the webgui wrote to its outbox so far."""
        self.outbox.seal()
        return [
            e for path in sorted(self.outbox.folder.glob("*.jsonl")) for e in read_segment(path)
        ]

    def close(self) -> None:
        """Stop the server, release the outbox and the database."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self.outbox.close()
        self.engine.dispose()


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        """Signals belong to pytest."""


def sign_in(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    """Sign in through the form, as a browser does; the answer to the POST."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token.group(1), "next": ""},
        follow_redirects=False,
    )


def csrf_of(client: httpx.Client) -> str:
    """The CSRF token of the client's session (from the page's meta tag)."""
    page = client.get("/", headers={"accept": "text/html"})
    match = re.search(r'<meta name="csrf-token" content="([^"]*)"', page.text)
    assert match and match.group(1), "no CSRF token on the page: not signed in?"
    return match.group(1)


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if value and "javascript:" in value.lower():
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag == "script":
            source = dict(attrs).get("src")
            if not source:
                self.problems.append("inline <script>")
            self._in_script = True
        if tag == "img" and dict(attrs).get("src") == "x":
            self.problems.append("injected <img>")
        if tag == "style":
            self.problems.append("inline <style>")
        if any(name == "style" for name, _ in attrs):
            self.problems.append(f"style attribute on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append(f"script content {data[:40]!r}")


def assert_inert(html: str) -> None:
    """No injected script, event handler, javascript: URL, inline style or script."""
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    assert scanner.problems == [], scanner.problems


def iso(moment: datetime) -> str:
    """A time as the API takes it."""
    return moment.isoformat()


def engine_rows(engine: sa.Engine, table: sa.Table) -> list[dict[str, object]]:
    """Every row of a bookkeeper table."""
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(sa.select(table)).mappings()]
