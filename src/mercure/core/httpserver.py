"""uvicorn inside the service frame: the listening socket and a server without signal handlers.

The HTTP services (bookkeeper, webgui) serve with uvicorn from their ``serve()`` hook. The
frame owns SIGTERM/SIGINT, so uvicorn must not install its own handlers; the service sets
``should_exit`` when the frame says stop.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from mercure.core.errors import PermanentError


class FrameServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the service frame owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signals to the service frame."""
        yield


def listen_socket(host: str, port: int, service: str) -> socket.socket:
    """A listening TCP socket on ``host:port``; PermanentError naming both when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does, and
    # without it every response written in two parts waits for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PermanentError(f"{service} cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock
