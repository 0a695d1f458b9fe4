"""The senders: one per channel type, each ``async send(channel, message) -> answer``.

A sender renders its channel's templates over the message's fields, sends once within the
channel's ``timeout`` and returns a short summary of the peer's answer ("HTTP 200", "250 OK").
It raises :class:`SendFailed` otherwise, saying whether a later attempt can succeed: a template
that does not render, a refusal the peer will repeat (HTTP 4xx other than 408 and 429, SMTP
5xx) is permanent; a refused or lost connection, a timeout, HTTP 5xx, 408 or 429 and SMTP 4xx
are worth another attempt. No reason quotes a secret (they are scrubbed again when recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mercure.core.config.models import AppriseChannel, EmailChannel, WebhookChannel
from mercure.core.notifications.templates import TemplateProblem, render

ChannelConfig = WebhookChannel | EmailChannel | AppriseChannel

ID_HEADER = "X-Mercure-Notification-Id"
"""Carries the notification's id: delivery is at least once, so receivers may drop repeats."""
EVENT_HEADER = "X-Mercure-Event"
"""Carries the trigger (reception, completion, error, test)."""


class SendFailed(Exception):
    """An attempt that did not deliver; ``permanent`` when repeating it cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Message:
    """What one attempt sends: the notification's id and trigger, and the template fields."""

    id: str
    trigger: str
    fields: Mapping[str, Any]

    def render(self, template: str, what: str, *, html: bool = False) -> str:
        """Render one template of the channel; a failure is permanent."""
        try:
            return render(template, self.fields, html=html)
        except TemplateProblem as exc:
            problem = f"template of the {what} does not render: {exc}"
            raise SendFailed(problem, permanent=True) from None


async def send(channel: ChannelConfig, message: Message) -> str:
    """Send ``message`` through ``channel`` once, within its timeout; the peer's answer."""
    from mercure.notifier.senders import apprise as apprise_sender
    from mercure.notifier.senders import email as email_sender
    from mercure.notifier.senders import webhook as webhook_sender

    try:
        async with asyncio.timeout(channel.timeout):
            if isinstance(channel, WebhookChannel):
                return await webhook_sender.send(channel, message)
            if isinstance(channel, EmailChannel):
                return await email_sender.send(channel, message)
            return await apprise_sender.send(channel, message)
    except TimeoutError:
        raise SendFailed(f"no answer within {channel.timeout:g} s") from None
