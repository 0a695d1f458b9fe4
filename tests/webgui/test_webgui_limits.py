"""Every request is bounded: a body over the limit is refused before it is read."""

from __future__ import annotations

import socket
import time

import httpx
from webgui_harness import WebGui


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 5.0) -> bytes:
    """Send ``head`` (and ``body``) on a raw socket; what the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        answer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
        return answer


def test_announced_huge_body_is_refused_before_it_is_sent(webgui: WebGui) -> None:
    """A Content-Length of 10 GB gets 413 at once, with none of the body sent."""
    webgui.start()
    head = (
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 10737418240\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_request(webgui.port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < 3


def test_chunked_body_is_cut_off_at_the_limit(webgui: WebGui) -> None:
    """A body without a length is counted as it arrives and refused past the limit."""
    webgui.start()
    limit = webgui.context.settings.max_body
    chunk = b"a" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2))
    head = (
        b"POST /logout HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    answer = raw_request(webgui.port, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_body_under_the_limit_is_served(webgui: WebGui, anonymous: httpx.Client) -> None:
    """Just under the limit, the request reaches the application (here: the CSRF check)."""
    limit = webgui.context.settings.max_body
    response = anonymous.post(
        "/login",
        content=b"name=" + b"a" * (limit - 100),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 403


def test_the_limit_follows_the_configuration(webgui: WebGui, anonymous: httpx.Client) -> None:
    """A reload that lowers max_request_kb applies to the next request."""
    config = webgui.config.model_copy(
        update={"webgui": webgui.config.webgui.model_copy(update={"max_request_kb": 16})}
    )
    webgui.context.apply(config)
    response = anonymous.post(
        "/login",
        content=b"x" * (17 << 10),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
