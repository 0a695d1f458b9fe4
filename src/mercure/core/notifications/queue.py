"""The notification queue: ``data_dir/notifications/<id>.json``, one file per message to send.

Any service queues a notification by writing its file atomically (and fsynced) *before* the
task moves on, like its events: a service killed in between queues it again on the repeat, so
a notification may be sent twice but is never lost. ``mercure notifier`` is the only reader; it
replaces a file atomically to record a failed attempt, and removes it once the outcome (sent or
given up) is in its event outbox. Names start with the creation time, so a listing is oldest
first; names starting with a dot are temporary.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mercure.core.atomic import atomic_write_text
from mercure.core.clock import time_ordered_id, utcnow
from mercure.core.datafolder import DataFolder, is_visible
from mercure.core.errors import TaskError

SCHEMA_VERSION = 1

Trigger = Literal["reception", "completion", "error", "test"]


class Notification(BaseModel):
    """One message for one channel, with the facts its templates are rendered from."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    id: str
    channel: str = Field(description="Name under `notifications:` in the configuration.")
    trigger: Trigger
    rule: str | None = None
    task_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="Template fields (templates.FIELDS) as known when queued; PHI included, "
        "blanked at rendering unless the channel allows it.",
    )
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


def new_notification_id() -> str:
    """Sorts by creation time, unique across hosts."""
    return time_ordered_id()


def notification_path(data: DataFolder, notification_id: str) -> Path:
    """Where the notification of this id is queued."""
    return data.notifications_dir / f"{notification_id}.json"


def write_notification(path: Path, notification: Notification) -> None:
    """Write (or atomically replace) a queued notification."""
    atomic_write_text(path, notification.model_dump_json(indent=2) + "\n")


def enqueue(data: DataFolder, notification: Notification) -> Path:
    """Queue ``notification``: durable once this returns."""
    path = notification_path(data, notification.id)
    write_notification(path, notification)
    return path


def queued(data: DataFolder) -> list[Path]:
    """The queued notifications, oldest first."""
    try:
        names = os.listdir(data.notifications_dir)
    except FileNotFoundError:
        return []
    return [
        data.notifications_dir / name
        for name in sorted(names)
        if is_visible(name) and name.endswith(".json")
    ]


def read_notification(path: Path) -> Notification:
    """Read a queued notification; :class:`TaskError` saying what is wrong with it."""
    try:
        return Notification.model_validate(json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, ValidationError) as exc:
        raise TaskError(f"unreadable notification {path.name}: {exc}") from None
