"""Time, in one place, so that tests can reason about it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(UTC)


def time_ordered_id() -> str:
    """An id that sorts by creation time and is unique across hosts (tasks, notifications)."""
    return f"{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"
