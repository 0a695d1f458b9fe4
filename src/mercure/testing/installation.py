"""Real mercure-router installations for integration tests, soaks and benchmarks.

- :func:`write_config`: a ``mercure.yaml`` with free ports and short timings.
- :class:`MercureProcess`: ``python -m mercure <command> --config ...`` as a child process
  (``run`` for the supervisor with every service, or one service), started and stopped by PID.
- :class:`BookkeeperClient`: the bookkeeper's read API with the configured token.
- :class:`OutboxRecorder`: a hard link to every outbox segment the moment it appears, so the
  test still reads every event written after the deliverer deleted the delivered segment.
- :func:`postgres_database`: an empty database on the real PostgreSQL server, dropped after.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from mercure.core.datafolder import DataFolder
from mercure.core.events import TAP_ENV, Event, read_segment
from mercure.core.heartbeat import read_heartbeats
from mercure.testing.peers.process import PeerProcess, is_listening
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until

API_KEY = "integration-test-key"

COPY_MODULE = """
import json, os, shutil
from pathlib import Path
in_dir, out_dir = Path(os.environ["MERCURE_IN_DIR"]), Path(os.environ["MERCURE_OUT_DIR"])
files = sorted(p for p in in_dir.iterdir() if p.suffix == ".dcm")
for path in files:
    shutil.copyfile(path, out_dir / path.name)
print(f"copied {len(files)} files", flush=True)
(out_dir / "result.json").write_text(json.dumps({"copied": len(files), "findings": ["none"]}))
"""
"""A command module: copies its input to its output and reports a result."""


def write_config(
    folder: Path,
    *,
    receiver_port: int,
    bookkeeper_port: int,
    targets: Mapping[str, Any],
    rules: Mapping[str, Any],
    modules: Mapping[str, Any] | None = None,
    database_url: str | None = None,
    webgui_port: int | None = None,
) -> Path:
    """Write ``folder/mercure.yaml`` for a fast test installation; returns its path.

    The web interface gets ``webgui_port``, or a free port (never the default 8000, which a
    parallel test or the administrator's own installation may hold).
    """
    config = {
        "data_dir": str(folder / "data"),
        "logging": {"level": "INFO"},
        "receiver": {
            "listeners": [
                {"name": "default", "host": "127.0.0.1", "port": receiver_port, "aet": "MERCURE"}
            ],
            "fsync": False,
            "min_free_disk_mb": 10,
            # One receiver process: the suite starts many installations on two cores, and the
            # multi-process receiver has its own tests (tests/receiver/test_processes.py).
            "processes": 1,
        },
        "router": {"series_complete_trigger": 1, "rescan_interval": 5},
        "targets": dict(targets),
        "rules": dict(rules),
        "modules": dict(modules or {}),
        "dispatch": {"retry_attempts": 3, "retry_base_delay": 0.5, "retry_max_delay": 1},
        "bookkeeper": {
            "host": "127.0.0.1",
            "port": bookkeeper_port,
            "api_key": API_KEY,
            "database_url": database_url,
        },
        "webgui": {"host": "127.0.0.1", "port": webgui_port or free_port()},
        "supervisor": {"heartbeat_interval": 0.5, "restart_backoff_max": 1, "stop_timeout": 15},
    }
    path = folder / "mercure.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_module(folder: Path) -> dict[str, Any]:
    """The configuration of :data:`COPY_MODULE`, written into ``folder``."""
    script = folder / "copy_module.py"
    script.write_text(COPY_MODULE)
    return {"runner": "command", "command": [sys.executable, str(script)], "timeout": 60}


class MercureProcess(PeerProcess):
    """``mercure <command> --config CONFIG`` as a child process in its own process group.

    Ready means: the listener's port (``listen_port``) is open, and for the bookkeeper or
    ``run`` its ``/health`` answers; for other services, a heartbeat of this process says
    ``running``.
    """

    start_timeout = 60.0

    def __init__(
        self,
        command: str,
        config_path: Path,
        *,
        listen_port: int | None = None,
        health_url: str | None = None,
        log_name: str | None = None,
    ) -> None:
        self.name = f"mercure {command}"
        self.command = command
        self.config_path = config_path
        self.listen_port = listen_port
        self.health_url = health_url
        self.run_dir = DataFolder(yaml.safe_load(config_path.read_text())["data_dir"]).run_dir
        argv = [sys.executable, "-m", "mercure", command, "--config", str(config_path)]
        log_path = config_path.parent / "logs" / f"{log_name or command}.log"
        super().__init__(argv, log_path)

    def is_ready(self) -> bool:
        """The port is open, the bookkeeper answers, or this process reports running."""
        if self.listen_port is not None and not is_listening(self.listen_port):
            return False
        if self.health_url is not None:
            try:
                return httpx.get(self.health_url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        if self.listen_port is not None:
            return True
        return any(
            b.pid == self.pid and b.state == "running" for b in read_heartbeats(self.run_dir)
        )

    def shutdown(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to this process only (a supervisor stops its services in order); its code."""
        if not self.running:
            self.stop()
            return None
        os.kill(self.pid, signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not self.running, timeout=timeout, interval=0.05)
        code = None if self._process is None else self._process.poll()
        self.stop()
        return code


class BookkeeperClient:
    """The bookkeeper's read API (``docs/bookkeeper.md``), authenticated with :data:`API_KEY`."""

    def __init__(self, port: int) -> None:
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def get(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>`` and the decoded JSON; raises for an error status."""
        response = self.client.get(f"/api/v1/{path}", params=params)
        response.raise_for_status()
        return response.json()

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged search."""
        items: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = self.get(path, limit=1000, offset=offset, **params)
            items += page["items"]
            offset = page["next_offset"]
        return items

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        """Every stored event matching the filters."""
        return self.all_pages("events", **filters)

    def tasks(self, **filters: Any) -> list[dict[str, Any]]:
        """Every task matching the filters."""
        return self.all_pages("tasks", **filters)

    def series(self, **filters: Any) -> list[dict[str, Any]]:
        """Every series matching the filters."""
        return self.all_pages("series", **filters)

    def task(self, task_id: str) -> dict[str, Any]:
        """One task with its versions and processing runs."""
        result: dict[str, Any] = self.get(f"tasks/{task_id}")
        return result

    def timeline(self, task_id: str) -> list[dict[str, Any]]:
        """The events of a task, oldest first, from the reception of its series."""
        result: list[dict[str, Any]] = self.get(f"tasks/{task_id}/timeline")
        return result


def is_in_order(kinds: list[str], expected: list[str]) -> bool:
    """Whether ``expected`` occurs in ``kinds`` as a subsequence (other kinds between)."""
    remaining = iter(kinds)
    return all(kind in remaining for kind in expected)


class OutboxRecorder:
    """Every outbox segment any service writes, kept in ``shadow`` as it is created.

    The services started with :meth:`env` hard-link each new segment into ``shadow`` the moment
    they create it (:data:`mercure.core.events.TAP_ENV`); the link keeps the file when the
    segment is sealed, delivered and deleted, so :meth:`events` reads every event any service
    wrote, delivered or not. Done by the writer itself, nothing races the delivery.
    """

    def __init__(self, shadow: Path) -> None:
        self.shadow = shadow

    def start(self) -> OutboxRecorder:
        """Create the shadow folder; give :meth:`env` to every service started from now on."""
        self.shadow.mkdir(parents=True, exist_ok=True)
        return self

    def env(self) -> dict[str, str]:
        """The environment variable that makes a service link its segments into the shadow."""
        return {TAP_ENV: str(self.shadow)}

    def stop(self) -> None:
        """Nothing to stop: the shadow stays for :meth:`events`."""

    def events(self) -> list[Event]:
        """Every event written to any outbox since :meth:`start` (complete lines only)."""
        return [event for path in sorted(self.shadow.iterdir()) for event in read_segment(path)]


POSTGRES = "host=127.0.0.1 port=5432 dbname=postgres user="
POSTGRES_USERS = ("postgres", "root")


def _postgres_admin() -> str | None:
    for user in POSTGRES_USERS:
        with (
            contextlib.suppress(psycopg.OperationalError),
            psycopg.connect(POSTGRES + user, connect_timeout=3),
        ):
            return user
    return None


def _postgres_admin_started() -> str:
    # Debian's cluster may be installed but not running (a fresh machine, a reboot).
    user = _postgres_admin()
    if user is not None:
        return user
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions:
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
        subprocess.run(command, check=False, capture_output=True, timeout=60)
    found = wait_until(
        _postgres_admin,
        timeout=30,
        interval=0.5,
        message="PostgreSQL reachable on 127.0.0.1:5432 as postgres or root "
        "(apt-get install postgresql)",
    )
    assert found is not None
    return found


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database on the local PostgreSQL server (started if
    installed but not running), dropped afterwards."""
    user = _postgres_admin_started()
    name = f"mercure_integration_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES + user, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES + user, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
