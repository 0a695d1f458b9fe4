"""Heartbeat files: how `mercure status` and the supervisor see that a service is alive.

Each running service process replaces ``run/<service>@<instance>.json`` every
``heartbeat_interval`` seconds. A heartbeat older than three intervals, or one whose process is
gone, means the service is down; a clean stop writes ``state: stopped``.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from mercure.core.atomic import atomic_write_text
from mercure.core.clock import utcnow

State = Literal["starting", "running", "stopping", "stopped"]


class Heartbeat(BaseModel):
    """The content of a heartbeat file."""

    service: str
    instance: str
    host: str
    pid: int
    state: State
    started_at: datetime
    time: datetime
    interval: float
    detail: str = ""


def heartbeat_path(run_dir: Path, service: str, instance: str) -> Path:
    """Where a service instance writes its heartbeat."""
    return run_dir / f"{service}@{instance}.json"


def write_heartbeat(run_dir: Path, beat: Heartbeat) -> None:
    """Replace the heartbeat file atomically (no fsync: it is rewritten every few seconds)."""
    atomic_write_text(
        heartbeat_path(run_dir, beat.service, beat.instance), beat.model_dump_json(), fsync=False
    )


def read_heartbeats(run_dir: Path) -> list[Heartbeat]:
    """Every readable heartbeat in ``run_dir``."""
    beats = []
    try:
        names = sorted(os.listdir(run_dir))
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue
        try:
            beats.append(Heartbeat.model_validate_json((run_dir / name).read_bytes()))
        except (OSError, ValidationError, json.JSONDecodeError):
            continue
    return beats


def instance_in_use(run_dir: Path, service: str, instance: str) -> Heartbeat | None:
    """The live heartbeat of another process that runs ``service`` under the instance name
    ``instance`` (on this host or another one sharing the data folder), or None.

    Instance names name heartbeat files, outboxes and events, so they must be unique across
    hosts: a second process under a name in use would overwrite the first one's heartbeat.
    """
    try:
        beat = Heartbeat.model_validate_json(
            heartbeat_path(run_dir, service, instance).read_bytes()
        )
    except (OSError, ValidationError, ValueError):
        return None
    if beat.host == socket.gethostname() and beat.pid == os.getpid():
        return None
    return beat if liveness(beat) == "up" else None


def liveness(beat: Heartbeat, now: datetime | None = None) -> str:
    """``up``, ``stale`` (no recent heartbeat), ``down`` (process gone) or ``stopped``."""
    if beat.state == "stopped":
        return "stopped"
    if beat.host == socket.gethostname() and not _pid_alive(beat.pid):
        return "down"
    age = ((now or utcnow()) - beat.time).total_seconds()
    return "up" if age <= 3 * beat.interval else "stale"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
