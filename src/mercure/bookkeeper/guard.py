"""The door of the bookkeeper: key and body size checked before a request body is read.

A pure ASGI layer in front of FastAPI. FastAPI reads and parses a whole body before it runs a
route's dependencies, so a token checked there comes too late: an 800 MB post with a wrong
key was read into memory first (1.76 GB) and then answered 422. Here the key is checked on
the headers alone (401), an announced ``Content-Length`` over the limit is refused at once
(413), and a body without one (chunked) is counted while it arrives and refused the moment it
passes the limit. Refusals close the connection, so the rest of the body is never read.

Every path needs the key except ``/health`` (it says only up or down) and, when an
administrator opens it explicitly, ``/metrics``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})
METRICS_PATH = "/metrics"
DEFAULT_MAX_BODY = 4 << 20


class Access:
    """Who may use the API and how large a request may be; changes apply at once (reload)."""

    def __init__(
        self,
        keys: Callable[[], Sequence[str]],
        *,
        max_body: int = DEFAULT_MAX_BODY,
        metrics_open: bool = False,
    ) -> None:
        self.keys = keys
        """Returns the keys accepted right now (the current one and any previous ones)."""
        self.max_body = max_body
        self.metrics_open = metrics_open

    def is_open(self, path: str) -> bool:
        """Whether ``path`` is served without the key."""
        return path in OPEN_PATHS or (self.metrics_open and path == METRICS_PATH)

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one of the accepted keys (compared in constant time)."""
        supplied = token.encode("utf-8")
        matched = False
        for key in self.keys():
            # No early exit: the time taken does not tell which key, or how much of it, matched.
            matched |= hmac.compare_digest(supplied, key.encode("utf-8"))
        return matched and bool(supplied)


def bearer_token(scope: Scope) -> str:
    """The token of an ``Authorization: Bearer`` header, or "" when there is none."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestGuard:
    """ASGI middleware that enforces an :class:`Access` before the application sees a body."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass the request on with its body already read and bounded."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access = self.access
        if not access.is_open(scope["path"]) and not access.accepts(bearer_token(scope)):
            await _refuse(send, 401, "missing or wrong API key", {"www-authenticate": "Bearer"})
            return
        limit = access.max_body
        length = _content_length(scope)
        if length is not None and length > limit:
            await _refuse(send, 413, f"request body of {length} bytes; at most {limit} allowed")
            return
        if scope["method"] in ("GET", "HEAD") and not length:
            await self.app(scope, receive, send)
            return
        body = await _read_bounded(receive, limit)
        if body is None:
            await _refuse(send, 413, f"request body over {limit} bytes")
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_bounded(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes (or the client left)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the body read already, then waits like the original."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    # "connection: close" makes the server drop the connection after the answer instead of
    # reading (and discarding) the rest of an unwanted body to keep the connection alive.
    content = json.dumps({"detail": detail}).encode()
    raw: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"connection", b"close"),
    ]
    raw += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})
