"""A stand-in for an XNAT server (no XNAT can run here): the few REST calls the ``xnat`` target
makes, answered as XNAT documents them, and every call recorded for the tests to check.

- ``POST /data/JSESSION`` with HTTP basic credentials: a session id (body and
  ``JSESSIONID`` cookie); 401 for wrong credentials.
- ``DELETE /data/JSESSION``: ends the session.
- ``GET /data/projects/<id>``: 200 for a known project, 404 otherwise (session needed).
- ``POST /data/services/import?PROJECT_ID=…``: the zip body is kept (session needed); 200, or
  the status set in :attr:`XnatStandIn.import_status`.
"""

from __future__ import annotations

import base64
import io
import secrets
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    session: str | None
    content_type: str | None
    body: bytes = b""

    def zip_names(self) -> list[str]:
        """The names in the zip body (an import's instances)."""
        with zipfile.ZipFile(io.BytesIO(self.body)) as archive:
            return archive.namelist()

    def zip_member(self, name: str) -> bytes:
        """One file of the zip body."""
        with zipfile.ZipFile(io.BytesIO(self.body)) as archive:
            return archive.read(name)


@dataclass
class XnatStandIn:
    """An XNAT stand-in on a free loopback port; use as a context manager."""

    user: str = "mercure"
    password: str = "xnat-secret"
    projects: set[str] = field(default_factory=lambda: {"STUDY1"})
    import_status: int = 200
    calls: list[Call] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Its base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> XnatStandIn:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def imports(self) -> list[Call]:
        """The import calls received, in order."""
        return [c for c in self.calls if c.path == "/data/services/import"]


def _handler(standin: XnatStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the calls are recorded, not logged."""

        def _record(self) -> Call:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            cookie = self.headers.get("Cookie") or ""
            session = next(
                (c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("JSESSIONID=")),
                None,
            )
            call = Call(
                self.command,
                parts.path,
                {k: v[0] for k, v in parse_qs(parts.query).items()},
                self.headers.get("Authorization"),
                session,
                self.headers.get("Content-Type"),
                body,
            )
            standin.calls.append(call)
            return call

        def _answer(self, status: int, text: str = "", cookie: str | None = None) -> None:
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            if cookie:
                self.send_header("Set-Cookie", f"JSESSIONID={cookie}; Path=/; HttpOnly")
            self.end_headers()
            self.wfile.write(payload)

        def _logged_in(self, call: Call) -> bool:
            return call.session is not None and call.session in standin.sessions

        def do_POST(self) -> None:
            call = self._record()
            if call.path == "/data/JSESSION":
                expected = f"{standin.user}:{standin.password}".encode()
                if call.authorization != "Basic " + base64.b64encode(expected).decode():
                    self._answer(401, "Login attempt failed. Please try again.")
                    return
                session = secrets.token_hex(16).upper()
                standin.sessions.add(session)
                self._answer(200, session, cookie=session)
            elif call.path == "/data/services/import":
                if not self._logged_in(call):
                    self._answer(401, "no session")
                elif call.query.get("PROJECT_ID") not in standin.projects:
                    self._answer(404, f"project {call.query.get('PROJECT_ID')} not found")
                else:
                    status = standin.import_status
                    self._answer(status, "/data/prearchive/x" if status == 200 else "failed")
            else:
                self._answer(404, "not found")

        def do_GET(self) -> None:
            call = self._record()
            if not self._logged_in(call):
                self._answer(401, "no session")
            elif call.path.startswith("/data/projects/"):
                project = call.path.removeprefix("/data/projects/")
                found = project in standin.projects
                self._answer(200 if found else 404, "{}" if found else "not found")
            else:
                self._answer(404, "not found")

        def do_DELETE(self) -> None:
            call = self._record()
            if call.path == "/data/JSESSION" and call.session:
                standin.sessions.discard(call.session)
            self._answer(200)

    return Handler
