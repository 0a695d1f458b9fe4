"""apprise channel: each of the channel's URLs is notified with the rendered title and body.

apprise logs the URLs it handles (they hold tokens), so its loggers are kept at WARNING and
their records pass through a filter that scrubs registered secrets; the URLs of the loaded
configuration are registered secrets.
"""

from __future__ import annotations

import asyncio
import logging

from mercure.core.config.models import AppriseChannel
from mercure.core.masking import scrub
from mercure.notifier.senders import Message, SendFailed


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


def quiet_apprise() -> None:
    """Keep apprise's logging above DEBUG and free of secrets."""
    logger = logging.getLogger("apprise")
    if logger.level == logging.NOTSET or logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _Scrub) for f in logger.filters):
        logger.addFilter(_Scrub())


def send_blocking(channel: AppriseChannel, message: Message) -> str:
    """Notify every URL; ``apprise: N of N sent``."""
    import apprise

    quiet_apprise()
    title = message.render(channel.title, "title")
    body = message.render(channel.body, "body")
    sender = apprise.Apprise()
    bad = 0
    for url in channel.urls:
        if not sender.add(url.get_secret_value()):
            bad += 1
    if bad:
        raise SendFailed(
            f"{bad} of the {len(channel.urls)} apprise URLs not understood", permanent=True
        )
    if not sender.notify(title=title, body=body):
        raise SendFailed("apprise: not every service accepted the notification")
    return f"apprise: {len(channel.urls)} sent"


async def send(channel: AppriseChannel, message: Message) -> str:
    """Notify in a worker thread (apprise is blocking)."""
    return await asyncio.to_thread(send_blocking, channel, message)
