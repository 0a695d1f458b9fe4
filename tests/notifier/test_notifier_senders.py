"""The senders against real peers: e-mail over STARTTLS and implicit TLS with a login (aiosmtpd),
apprise's json:// to the HTTP recorder; the answers, the permanent/transient split, and no
secret in any log line."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from pathlib import Path
from typing import Any

import pytest
from notifier_helpers import (
    SECRETS,
    SMTP_PASSWORD,
    Recorder,
    email_channel,
    smtp_server,
    webhook_channel,
)
from pydantic import TypeAdapter

from mercure.core.config.models import Channel
from mercure.core.masking import register_secret
from mercure.core.notifications.templates import template_fields
from mercure.notifier.senders import ChannelConfig, Message, SendFailed, send

FACTS = {
    "event": "error",
    "text": "Task t9 of rule ct failed.",
    "rule": "ct",
    "task_id": "t9",
    "reason": "<b>disk full</b>",
    "patient_name": "DOE^JANE",
}


def channel_of(definition: dict[str, Any]) -> ChannelConfig:
    channel: ChannelConfig = TypeAdapter(Channel).validate_python(definition)
    return channel


def message(channel: ChannelConfig) -> Message:
    fields = template_fields(FACTS, include_phi=channel.include_phi, web_url="https://m.example")
    return Message(id="n-1", trigger="error", fields=fields)


def deliver(definition: dict[str, Any]) -> str:
    channel = channel_of(definition)
    return asyncio.run(send(channel, message(channel)))


@pytest.fixture(autouse=True)
def _secrets_registered() -> None:
    for secret in SECRETS:
        register_secret(secret)


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls", "tls"])
def test_email_with_login_over_tls(
    pki: Path, implicit_tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server(pki, implicit_tls=implicit_tls) as (box, port):
        security = "tls" if implicit_tls else "starttls"
        answer = deliver(email_channel(port, pki, security=security, html=True))
    assert answer.startswith("250") and "queued as 1234" in answer
    (envelope,) = box.messages
    assert envelope.mail_from == "mercure@example.org"
    assert envelope.rcpt_tos == ["radiology@example.org", "it@example.org"]
    mail = email.message_from_bytes(envelope.content or b"", policy=email.policy.default)
    assert mail["Subject"] == "[mercure] error: rule ct"
    assert mail["X-Mercure-Notification-Id"] == "n-1"
    assert mail.get_content_type() == "text/html"
    body = mail.get_content()
    assert "&lt;b&gt;disk full&lt;/b&gt;" in body and "DOE^JANE" not in body
    assert box.logins
    assert not [s for s in SECRETS if s in caplog.text]


def test_email_wrong_password_is_permanent_and_masked(pki: Path) -> None:
    with smtp_server(pki) as (box, port), pytest.raises(SendFailed) as failure:
        deliver(email_channel(port, pki, password="wrong-password-x"))
    assert failure.value.permanent and "535" in failure.value.reason
    assert SMTP_PASSWORD not in failure.value.reason
    assert not box.messages


def test_email_untrusted_certificate_fails(pki: Path) -> None:
    with smtp_server(pki) as (_, port), pytest.raises(SendFailed) as failure:
        deliver(email_channel(port, pki, ca_certificate=None))
    assert "TLS" in failure.value.reason and not failure.value.permanent


def test_email_server_down_is_transient(pki: Path, free_port: int) -> None:
    with pytest.raises(SendFailed) as failure:
        deliver(email_channel(free_port, pki))
    assert not failure.value.permanent


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (404, True), (408, False), (429, False), (500, False)]
)
def test_webhook_status_decides_retry(recorder: Recorder, status: int, permanent: bool) -> None:
    recorder.status = status
    with pytest.raises(SendFailed) as failure:
        deliver(webhook_channel(recorder))
    assert failure.value.permanent is permanent
    assert failure.value.reason.startswith(f"HTTP {status}")


def test_webhook_timeout_is_transient(recorder: Recorder) -> None:
    recorder.gate.clear()
    with pytest.raises(SendFailed) as failure:
        deliver(webhook_channel(recorder, timeout=0.5))
    recorder.gate.set()
    assert not failure.value.permanent


def test_apprise_json_to_the_recorder(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = recorder.url.replace("http://", "json://")
    register_secret(url)
    answer = deliver({"type": "apprise", "urls": [url], "title": "T {{ rule }}"})
    assert answer == "apprise: 1 sent"
    (request,) = recorder.delivered()
    assert b'"title": "T ct"' in request.body or b'"title":"T ct"' in request.body
    assert b"Task t9 of rule ct failed." in request.body
    # apprise logs its URLs at debug; above it, nothing of them reaches the log.
    assert not [
        r for r in caplog.records if r.levelno > logging.DEBUG and "hook-token" in r.getMessage()
    ]


def test_apprise_refusal_is_transient(recorder: Recorder) -> None:
    recorder.status = 500
    url = recorder.url.replace("http://", "json://")
    with pytest.raises(SendFailed) as failure:
        deliver({"type": "apprise", "urls": [url]})
    assert not failure.value.permanent
