"""Pure ASGI layers in front of the application, outermost first.

- :class:`ProxyHeaders`: the client address and scheme from ``X-Forwarded-For`` /
  ``X-Forwarded-Proto``, believed only from a trusted proxy (uvicorn's own handling is off:
  it would trust 127.0.0.1 by default, and every local process is 127.0.0.1);
- :class:`SecurityHeaders`: CSP, frame, referrer, sniffing and cache headers on every answer
  (errors and static files too), HSTS under HTTPS;
- :class:`RootPath`: the ``root_path`` prefix, whether a reverse proxy kept it or stripped it;
- :class:`BodyLimit`: a body over the limit is refused (413) before it is read: an announced
  ``Content-Length`` at once, a chunked body the moment it passes the limit.

They are ASGI rather than Starlette middleware so that they run before anything reads a
body, and so that they wrap every answer, whatever produced it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercure.webgui.settings import WebSettings

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
STATIC_PREFIX = "/static/"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class ProxyHeaders:
    """Client address and scheme as a trusted reverse proxy reports them."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite ``client`` and ``scheme`` of a request that came through a trusted proxy."""
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client and self.settings.is_trusted_proxy(client[0]):
                scope = dict(scope)
                forwarded_for = _header(scope, b"x-forwarded-for")
                if forwarded_for:
                    # Right to left: the first address that is not one of our proxies is the
                    # client; what lies left of it was written by the client and proves nothing.
                    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
                    host = client[0]
                    for hop in reversed(hops):
                        host = hop
                        if not self.settings.is_trusted_proxy(hop):
                            break
                    scope["client"] = (host, 0)
                proto = _header(scope, b"x-forwarded-proto")
                if proto:
                    last = proto.split(",")[-1].strip().lower()
                    if last in ("http", "https"):
                        scope["scheme"] = last if scope["type"] == "http" else f"ws{last[4:]}"
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds the security headers to every response; pages are never cached."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        path, root = scope["path"], self.settings.root_path
        if root and path.startswith(root + "/"):
            path = path[len(root) :]
        static = path.startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"cache-control"
                ]
                headers += SECURITY_HEADERS
                # Static files may be kept but must be revalidated (an upgrade changes them);
                # pages and fragments hold patient data and are never stored.
                headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                if https:
                    headers.append(HSTS)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RootPath:
    """Serves the application under ``root_path`` (e.g. ``/mercure``).

    A reverse proxy may forward ``/mercure/login`` as it is or strip the prefix to
    ``/login``; both reach the same page. Links are always made with the prefix.
    """

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.root_path = settings.root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set ``root_path`` and make ``path`` start with it."""
        root = self.root_path
        if not root or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == root and scope["type"] == "http":
            await _send_plain(send, 308, "", {"location": root + "/"})
            return
        if not path.startswith(root + "/"):
            path = root + path
        await self.app({**scope, "root_path": root, "path": path}, receive, send)


UPLOAD_PATH = "/upload"
"""The Upload page's POST: its body (DICOM files) may reach ``webgui.max_upload_mb`` and is
streamed to the form parser's spool files rather than held here."""


class BodyLimit:
    """Refuses a request body over ``settings.max_body`` bytes before it is read (the Upload
    page's POST: ``settings.max_upload``, streamed through)."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse at once (announced length) or while reading (chunked); else pass on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body
        upload = scope["method"] == "POST" and scope["path"] == (
            self.settings.root_path + UPLOAD_PATH
        )
        if upload:
            limit = self.settings.max_upload
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await _send_plain(send, 400, "bad Content-Length")
                return
            if announced > limit:
                await _send_plain(send, 413, f"request body over {limit} bytes refused")
                return
            if scope["method"] in ("GET", "HEAD") and announced == 0:
                await self.app(scope, receive, send)
                return
        elif scope["method"] in ("GET", "HEAD") and _header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)
            return
        if upload:
            counted = _CountedUpload(receive, send, limit)
            await self.app(scope, counted.receive, counted.send)
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_plain(send, 413, f"request body over {limit} bytes refused")
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _CountedUpload:
    """The Upload POST's ``receive`` passed on as it comes (not held in memory: the form
    parser spools the files), refused with 413 once ``limit`` bytes went by; the application's
    own answer is then dropped (it sees the client gone)."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.size = 0
        self.refused = False

    async def receive(self) -> Message:
        message = await self._receive()
        self.size += len(message.get("body", b""))
        if self.size > self.limit and not self.refused:
            self.refused = True
            await _send_plain(self._send, 413, f"upload over {self.limit} bytes refused")
        if self.refused:
            return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if not self.refused:
            await self._send(message)


async def _send_plain(
    send: Send, status: int, text: str, headers: dict[str, str] | None = None
) -> None:
    # "connection: close": the server drops the connection instead of reading the rest of an
    # unwanted body to keep it alive.
    body = text.encode()
    raw = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
