"""The bookkeeper application served over real HTTP on loopback, for the tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until

TOKEN = "test-token-3f9a"


@dataclass
class RunningApp:
    """The bookkeeper application served by uvicorn on a loopback port."""

    app: FastAPI
    url: str
    client: httpx.Client
    """A client that sends the right token."""


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        """Signals belong to pytest."""


def serve_app(app: FastAPI) -> Iterator[RunningApp]:
    """Serve ``app`` with uvicorn in a thread until the generator is closed."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = _ThreadServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, message="uvicorn start")
    url = f"http://127.0.0.1:{port}"
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, transport=nodelay) as client:
        yield RunningApp(app, url, client)
    server.should_exit = True
    thread.join(10)
