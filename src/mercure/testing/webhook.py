"""A webhook's receiver for tests: a real threaded HTTP(S) server on loopback that records the
requests it answers, and can refuse (503), answer any status, or hold requests (a slow peer).

Used by the notifier's tests and the end-to-end notification tests; a real server, not a fake
of one: it speaks HTTP over a socket like any webhook receiver.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Request:
    """One request the recorder answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """A threaded HTTP server on loopback that records requests.

    ``fail_first`` requests are answered 503; ``status`` is the answer after that;
    ``gate``, when cleared, holds requests before they are answered (a slow peer).
    """

    server: http.server.ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    fail_first: int = 0
    status: int = 200
    refused: int = 0
    arrived: int = 0
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    scheme: str = "http"
    path: str = "/hook"

    @property
    def url(self) -> str:
        """Where to send: ``http(s)://127.0.0.1:<port><path>``."""
        port = self.server.server_address[1]
        return f"{self.scheme}://127.0.0.1:{port}{self.path}"

    def delivered(self) -> list[Request]:
        """The requests answered 2xx."""
        with self.lock:
            return list(self.requests)

    def ids(self) -> list[str]:
        """The notification ids of the delivered requests (repeats included)."""
        return [r.headers.get("X-Mercure-Notification-Id", "") for r in self.delivered()]


def _handler(recorder_box: list[Recorder]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            recorder = recorder_box[0]
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with recorder.lock:
                recorder.arrived += 1
            recorder.gate.wait(30)
            with recorder.lock:
                if recorder.fail_first > 0:
                    recorder.fail_first -= 1
                    recorder.refused += 1
                    status = 503
                else:
                    status = recorder.status
                    if 200 <= status < 300:
                        recorder.requests.append(
                            Request(self.command, self.path, dict(self.headers.items()), body)
                        )
                    else:
                        recorder.refused += 1
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = do_PUT = do_PATCH = _any

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a sender's timeout, a killed notifier) is what some tests do
        # on purpose; the standard handler would print its traceback into the test output.
        pass


@contextlib.contextmanager
def http_recorder(
    port: int = 0, *, pki: Path | None = None, path: str = "/hook"
) -> Iterator[Recorder]:
    """A recorder listening on 127.0.0.1 (a free port unless given); HTTPS with the test
    CA's server certificate when ``pki`` is given."""
    box: list[Recorder] = []
    server = _Server(("127.0.0.1", port), _handler(box))
    if pki is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki / "server.pem", pki / "server.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
    recorder = Recorder(server, scheme="https" if pki else "http", path=path)
    recorder.gate.set()
    box.append(recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
