"""Webhook channel: one HTTP request per notification, optionally signed.

Signature (``hmac_secret``): the header ``hmac_header`` (default ``X-Mercure-Signature``) is
``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``. A receiver verifies it by computing
``hmac.new(secret, f"{t}.".encode() + raw_body, sha256).hexdigest()``, comparing it with ``v1``
in constant time (``hmac.compare_digest``) and refusing a ``t`` older than a few minutes (a
replayed request).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time

import httpx

from mercure.core.config.models import WebhookChannel
from mercure.notifier.senders import EVENT_HEADER, ID_HEADER, Message, SendFailed

RETRIED_STATUSES = {408, 429}
"""Client errors that a later attempt may get past (timeout, rate limit)."""


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _verify(channel: WebhookChannel) -> ssl.SSLContext | bool:
    if not channel.verify_tls:
        return False
    if channel.ca_certificate is not None:
        return ssl.create_default_context(cafile=str(channel.ca_certificate))
    return True


async def send(channel: WebhookChannel, message: Message) -> str:
    """POST (PUT, PATCH) the rendered body; ``HTTP <status>`` of a 2xx answer."""
    body = message.render(channel.body, "body").encode("utf-8")
    headers = {name: value.get_secret_value() for name, value in channel.headers.items()}
    headers["Content-Type"] = channel.content_type
    headers[ID_HEADER] = message.id
    headers[EVENT_HEADER] = message.trigger
    if channel.hmac_secret is not None:
        secret = channel.hmac_secret.get_secret_value().encode("utf-8")
        headers[channel.hmac_header] = signature(secret, body, int(time.time()))
    try:
        verify = _verify(channel)
    except OSError as exc:
        raise SendFailed(f"cannot read ca_certificate: {exc.strerror or exc}") from None
    try:
        async with httpx.AsyncClient(verify=verify, timeout=channel.timeout) as client:
            response = await client.request(
                channel.method, channel.url.get_secret_value(), content=body, headers=headers
            )
    except httpx.HTTPError as exc:
        # The exception's text never holds the address; the type says what went wrong.
        raise SendFailed(f"{type(exc).__name__}: {exc}") from None
    status = response.status_code
    answer = f"HTTP {status}"
    if 200 <= status < 300:
        return answer
    permanent = 400 <= status < 500 and status not in RETRIED_STATUSES
    reason = response.reason_phrase or ""
    raise SendFailed(f"{answer} {reason}".strip(), permanent=permanent)
