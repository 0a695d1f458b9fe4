"""Helpers of the notifier's tests: a real HTTP recorder, a real SMTP server, configurations,
queued notifications, the events in the outboxes and a ``mercure notifier`` process."""

from __future__ import annotations

import contextlib
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from mercure.core.datafolder import DataFolder
from mercure.core.events import Event, read_segment
from mercure.core.notifications.queue import Notification, enqueue, new_notification_id
from mercure.testing import webhook
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until
from mercure.testing.webhook import Recorder

WEBHOOK_TOKEN = "hook-token-7f3a9c"
"""The secret part of the test webhook's address: must never appear in events or logs."""
HEADER_SECRET = "Bearer header-secret-51d2"
HMAC_SECRET = "hmac-secret-c0ffee"
SMTP_USER = "mercure"
SMTP_PASSWORD = "smtp-password-8e1b"
SECRETS = (WEBHOOK_TOKEN, HEADER_SECRET, HMAC_SECRET, SMTP_PASSWORD)


def http_recorder(
    port: int = 0, *, pki: Path | None = None
) -> contextlib.AbstractContextManager[Recorder]:
    """The webhook recorder at the secret test path (``/hooks/<WEBHOOK_TOKEN>``)."""
    return webhook.http_recorder(port, pki=pki, path=f"/hooks/{WEBHOOK_TOKEN}")


class MailBox:
    """What the SMTP server received (aiosmtpd handler)."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK queued as 1234"


def _authenticator(box: MailBox) -> Callable[..., AuthResult]:
    def check(
        server: SMTPProtocol, session: Session, envelope: Envelope, mechanism: str, auth: Any
    ) -> AuthResult:
        if not isinstance(auth, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth.login.decode() == SMTP_USER and auth.password.decode() == SMTP_PASSWORD
        if ok:
            box.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    return check


@contextlib.contextmanager
def smtp_server(pki: Path, *, implicit_tls: bool = False) -> Iterator[tuple[MailBox, int]]:
    """A real SMTP server on 127.0.0.1: STARTTLS and AUTH LOGIN/PLAIN (required), or TLS from
    the start; certificate of the test CA (``pki``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    box = MailBox()
    options: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "port": free_port(),
        "authenticator": _authenticator(box),
        "auth_require_tls": True,
        "auth_required": True,
    }
    if implicit_tls:
        # aiosmtpd does not count implicit TLS as TLS for AUTH; the connection is TLS anyway.
        options["ssl_context"] = context
        options["auth_require_tls"] = False
        options["auth_required"] = False
    else:
        options["tls_context"] = context
        options["require_starttls"] = True
    controller = Controller(box, **options)
    controller.start()
    try:
        yield box, options["port"]
    finally:
        controller.stop()


def webhook_channel(recorder: Recorder, **extra: Any) -> dict[str, Any]:
    """A webhook channel posting to ``recorder``, signed, with a secret header."""
    return {
        "type": "webhook",
        "url": recorder.url,
        "headers": {"Authorization": HEADER_SECRET},
        "hmac_secret": HMAC_SECRET,
        "timeout": 5,
        **extra,
    }


def email_channel(port: int, pki: Path, **extra: Any) -> dict[str, Any]:
    """An e-mail channel for the test SMTP server on ``port``."""
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "sender": "mercure@example.org",
        "to": ["radiology@example.org", "it@example.org"],
        "ca_certificate": str(pki / "ca.pem"),
        "timeout": 5,
        **extra,
    }


def write_config(
    tmp_path: Path, data: DataFolder, channels: dict[str, Any], **notifier: Any
) -> Path:
    """A mercure.yaml for ``data`` with ``channels`` and short retry delays."""
    path = tmp_path / "mercure.yaml"
    document = {
        "data_dir": str(data.root),
        "notifications": channels,
        "notifier": {"retry_base_delay": 0.2, "retry_max_delay": 1, **notifier},
        "supervisor": {"heartbeat_interval": 0.5},
        # No bookkeeper here (port 9 refuses): events stay in the outboxes for the tests to read.
        "bookkeeper": {"url": "http://127.0.0.1:9"},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def queue(data: DataFolder, channel: str, **fields: Any) -> Notification:
    """Queue a notification for ``channel`` with facts like a completed task's."""
    facts = {
        "event": "completion",
        "text": "Task t1 of rule ct is complete.",
        "rule": "ct",
        "task_id": "t1",
        "patient_name": "DOE^JANE",
        **fields.pop("facts", {}),
    }
    notification = Notification(
        id=new_notification_id(),
        channel=channel,
        trigger=fields.pop("trigger", "completion"),
        rule="ct",
        task_id=facts["task_id"],
        facts=facts,
        **fields,
    )
    enqueue(data, notification)
    return notification


def outbox_events(data: DataFolder, kind: str | None = None) -> list[Event]:
    """Events (of ``kind``) in every outbox of the data folder, sealed or open."""
    found: list[Event] = []
    for segment in sorted(data.outbox_dir.glob("*/*")):
        if segment.suffix in (".jsonl", ".open"):
            found.extend(e for e in read_segment(segment) if kind is None or e.kind == kind)
    return found


def outbox_text(data: DataFolder) -> str:
    """Every byte of every outbox, for looking for secrets."""
    return "".join(
        p.read_text("utf-8", "replace") for p in data.outbox_dir.rglob("*") if p.is_file()
    )


class RunningNotifier:
    """A ``mercure notifier`` process."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def wait_for(self, condition: Callable[[], object], timeout: float = 30) -> None:
        """Wait until ``condition`` holds; fail early if the service died."""
        wait_until(lambda: condition() or self.process.poll() is not None, timeout=timeout)
        assert self.process.poll() is None, f"the notifier exited: {self.log.read_text()}"
        assert condition()

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


@contextlib.contextmanager
def running_notifier(config: Path, log: Path) -> Iterator[RunningNotifier]:
    """Start ``mercure notifier`` in a child process; stopped with SIGTERM at the end."""
    command = [sys.executable, "-m", "mercure", "notifier", "--config", str(config)]
    with log.open("ab") as sink, subprocess.Popen(command, stderr=sink, stdout=sink) as process:
        running = RunningNotifier(process, log)
        try:
            yield running
            if process.poll() is None:
                assert running.stop() == 0
        finally:
            if process.poll() is None:
                process.kill()
