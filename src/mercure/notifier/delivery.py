"""One attempt at one queued notification, and what is recorded about it.

The outcome reaches the event outbox *before* the queue file changes: sent or given up, the
event is written and then the file removed; after a failed attempt the file is replaced
(attempts, next attempt, last error) and then the attempt reported. A process killed in
between repeats the attempt, so delivery is at least once; every request carries the
notification's id (``X-Mercure-Notification-Id``) for receivers that must drop repeats.

Failures: a channel that no longer exists or a template that does not render fails the
notification at once; so does a refusal the peer would repeat (see :mod:`.senders`). Other
failures are retried with a doubling delay (``retry_base_delay`` .. ``retry_max_delay``) until
``retry_period`` after the notification was queued, then it is recorded as failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mercure.core.clock import utcnow
from mercure.core.config.models import MercureConfig, NotifierConfig
from mercure.core.datafolder import DataFolder
from mercure.core.events import EventClient
from mercure.core.masking import scrub
from mercure.core.notifications.queue import Notification, write_notification
from mercure.core.notifications.templates import template_fields
from mercure.core.retry import RetryPolicy
from mercure.notifier.senders import ChannelConfig, Message, SendFailed, send

log = logging.getLogger(__name__)

FAILED_FOLDER = "failed"
"""Under ``data_dir/notifications``: queue files that could not be read, kept for a look."""

MAX_REASON = 500
"""Characters of a failure reason kept in events and the queue file."""


RETRY_JITTER = 0.5
"""Each delay is drawn from [half, all] of the doubling delay ("equal jitter"), so that the
notifications that failed together in an outage do not all retry at the same instant."""


def retry_delay(config: NotifierConfig, failed_attempts: int) -> float:
    """Seconds before the next attempt after ``failed_attempts`` (>= 1): doubling from
    ``retry_base_delay``, capped at ``retry_max_delay``, less jitter. The number of attempts is
    bounded by ``retry_period``, not by a count."""
    policy = RetryPolicy(
        attempts=0,
        base_delay=config.retry_base_delay,
        max_delay=config.retry_max_delay,
        jitter=RETRY_JITTER,
    )
    return policy.delay(failed_attempts)


def due_time(notification: Notification) -> datetime:
    """When the notification's next attempt is due."""
    return notification.next_attempt_at or notification.created_at


def message_of(
    notification: Notification, channel: ChannelConfig, config: MercureConfig
) -> Message:
    """The fields a channel's templates see for ``notification``."""
    web_url = str(config.notifier.web_url) if config.notifier.web_url else None
    fields = template_fields(notification.facts, include_phi=channel.include_phi, web_url=web_url)
    return Message(id=notification.id, trigger=notification.trigger, fields=fields)


def quarantine(data: DataFolder, path: Path, reason: str, events: EventClient) -> None:
    """Move an unreadable queue file to ``failed/`` and say so (the loop goes on)."""
    folder = data.notifications_dir / FAILED_FOLDER
    folder.mkdir(exist_ok=True)
    try:
        os.replace(path, folder / path.name)
    except FileNotFoundError:
        return
    log.error("moved unreadable notification %s to %s: %s", path.name, folder, reason)
    events.emit(
        "notification.unreadable",
        severity="error",
        message=f"unreadable notification {path.name} moved to notifications/{FAILED_FOLDER}/",
        notification_id=path.stem,
        reason=scrub(reason)[:MAX_REASON],
    )


async def attempt(
    path: Path, notification: Notification, config: MercureConfig, events: EventClient
) -> datetime | None:
    """Try ``notification`` once and record the outcome; when to try again, or None if done."""
    channel = config.notifications.get(notification.channel)
    attempts = notification.attempts + 1
    try:
        if channel is None:
            raise SendFailed(
                f"channel {notification.channel!r} is not in the configuration", permanent=True
            )
        answer = await send(channel, message_of(notification, channel, config))
    except SendFailed as exc:
        return _failed(path, notification, config, events, attempts, exc)
    except Exception as exc:  # a sender's bug must not end the loop; retried like an outage
        log.exception("sending notification %s failed unexpectedly", notification.id)
        failure = SendFailed(f"{type(exc).__name__}: {exc}")
        return _failed(path, notification, config, events, attempts, failure)
    events.emit(
        "notification.sent",
        message=f"notification {notification.id} sent to channel {notification.channel} ({answer})",
        task_id=notification.task_id,
        **_facts(notification, attempts),
        answer=scrub(answer)[:MAX_REASON],
    )
    log.info("notification %s sent to %s: %s", notification.id, notification.channel, answer)
    _remove(path)
    return None


def _failed(
    path: Path,
    notification: Notification,
    config: MercureConfig,
    events: EventClient,
    attempts: int,
    failure: SendFailed,
) -> datetime | None:
    reason = scrub(failure.reason)[:MAX_REASON]
    now = utcnow()
    deadline = notification.created_at + timedelta(seconds=config.notifier.retry_period)
    if failure.permanent or now >= deadline:
        why = "permanent failure" if failure.permanent else "retry period over"
        events.emit(
            "notification.failed",
            severity="error",
            message=f"notification {notification.id} to channel {notification.channel} "
            f"failed ({why}): {reason}",
            task_id=notification.task_id,
            **_facts(notification, attempts),
            reason=reason,
            permanent=failure.permanent,
        )
        log.error("notification %s to %s failed: %s", notification.id, notification.channel, reason)
        _remove(path)
        return None
    # One last attempt at the end of the retry period rather than none after a long delay.
    delay = timedelta(seconds=retry_delay(config.notifier, attempts))
    next_at = min(now + delay, deadline)
    updated = notification.model_copy(
        update={"attempts": attempts, "next_attempt_at": next_at, "last_error": reason}
    )
    write_notification(path, updated)
    events.emit(
        "notification.attempt",
        severity="warning",
        message=f"notification {notification.id} to channel {notification.channel}: attempt "
        f"{attempts} failed ({reason}); next at {next_at.isoformat(timespec='seconds')}",
        task_id=notification.task_id,
        **_facts(notification, attempts),
        reason=reason,
        next_attempt_at=next_at.isoformat(),
    )
    log.warning(
        "notification %s to %s: attempt %d failed: %s",
        notification.id,
        notification.channel,
        attempts,
        reason,
    )
    return next_at


def _facts(notification: Notification, attempts: int) -> dict[str, Any]:
    return {
        "notification_id": notification.id,
        "channel": notification.channel,
        "trigger": notification.trigger,
        "rule": notification.rule,
        "attempts": attempts,
    }


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
