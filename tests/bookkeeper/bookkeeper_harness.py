"""The bookkeeper application served over real HTTP on loopback, for the tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
import yaml
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


class BookkeeperProcess:
    """``mercure bookkeeper`` in a subprocess with its own configuration file."""

    def __init__(self, folder: Path, database_url: str | None, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "mercure.yaml"
        settings = {"port": self.port, "api_key": TOKEN, **settings}
        if database_url:
            settings["database_url"] = database_url
        self.config.write_text(
            yaml.safe_dump({"data_dir": str(folder / "data"), "bookkeeper": settings})
        )
        self.log = folder / "bookkeeper.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until it answers /health."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mercure", "bookkeeper", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, timeout=30, interval=0.05, message=f"bookkeeper at {self.url}")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"bookkeeper exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def signal(self, signum: int) -> int:
        """Send ``signum`` and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    @property
    def pid(self) -> int:
        """The process id of the running bookkeeper."""
        assert self.process is not None
        return self.process.pid

    def close(self) -> None:
        """Kill the process if a test left it running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
