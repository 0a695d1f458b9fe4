"""``mercure notifier`` as a process: sends queued notifications, retries, gives up, survives
kill -9 without losing or doubling a notification, and waits for another notifier's lock."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import signal
from pathlib import Path

import pytest
from notifier_helpers import (
    HEADER_SECRET,
    HMAC_SECRET,
    SECRETS,
    WEBHOOK_TOKEN,
    Recorder,
    outbox_events,
    outbox_text,
    queue,
    running_notifier,
    webhook_channel,
    write_config,
)

from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder
from mercure.core.events import EventClient, Outbox
from mercure.core.heartbeat import read_heartbeats
from mercure.core.masking import register_config
from mercure.core.notifications.queue import notification_path, queued, read_notification
from mercure.notifier.delivery import attempt
from mercure.testing.wait import wait_until


def verify_signature(header: str, body: bytes, secret: str) -> bool:
    """The receiver's side of the signature, written from the documented recipe."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def is_running(data: DataFolder) -> bool:
    """Whether a notifier has finished its set-up (it holds the lock)."""
    return any(
        b.service == "notifier" and b.state == "running" for b in read_heartbeats(data.run_dir)
    )


def test_retries_then_sends_a_signed_request(
    tmp_path: Path, data: DataFolder, recorder: Recorder
) -> None:
    recorder.fail_first = 2
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder)})
    notification = queue(data, "hook")
    with running_notifier(config, tmp_path / "notifier.log") as notifier:
        notifier.wait_for(lambda: recorder.delivered() and not queued(data))
        notifier.wait_for(lambda: outbox_events(data, "notification.sent"))
    (request,) = recorder.delivered()
    assert request.headers["X-Mercure-Notification-Id"] == notification.id
    assert request.headers["X-Mercure-Event"] == "completion"
    assert request.headers["Authorization"] == HEADER_SECRET
    assert verify_signature(request.headers["X-Mercure-Signature"], request.body, HMAC_SECRET)
    body = json.loads(request.body)
    assert body["task_id"] == "t1" and body["event"] == "completion"
    attempts = outbox_events(data, "notification.attempt")
    assert len(attempts) == 2
    assert all(e.severity == "warning" and "503" in e.data["reason"] for e in attempts)
    assert "next_attempt_at" in attempts[0].data
    (sent,) = outbox_events(data, "notification.sent")
    assert sent.task_id == "t1"
    assert sent.data["channel"] == "hook" and sent.data["trigger"] == "completion"
    assert sent.data["attempts"] == 3 and sent.data["answer"] == "HTTP 200"
    assert sent.data["rule"] == "ct"
    text = outbox_text(data) + (tmp_path / "notifier.log").read_text()
    assert not [secret for secret in SECRETS if secret in text]


def test_gives_up_after_the_retry_period(
    tmp_path: Path, data: DataFolder, recorder: Recorder
) -> None:
    recorder.fail_first = 10**6
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder)}, retry_period=1)
    with running_notifier(config, tmp_path / "notifier.log") as notifier:
        # Queued once the notifier runs, so the retry period is not spent on its start-up.
        notifier.wait_for(lambda: is_running(data))
        queue(data, "hook")
        # The event is recorded first, then the file removed.
        notifier.wait_for(lambda: outbox_events(data, "notification.failed") and not queued(data))
    (failed,) = outbox_events(data, "notification.failed")
    assert failed.severity == "error" and "503" in failed.data["reason"]
    assert failed.data["attempts"] >= 2
    assert not recorder.delivered()


def test_permanent_failures_fail_at_once(
    tmp_path: Path, data: DataFolder, recorder: Recorder
) -> None:
    # check-config renders templates over the sample, which has a module result; a real
    # task without one makes this template fail at send time.
    channels = {
        "hook": webhook_channel(recorder, body='{"finding": {{ result.finding | tojson }}}')
    }
    config = write_config(tmp_path, data, channels)
    bad_template = queue(data, "hook")
    gone = queue(data, "gone")
    (data.notifications_dir / "20000101T000000000000Z-broken.json").write_text("{not json")
    with running_notifier(config, tmp_path / "notifier.log") as notifier:
        notifier.wait_for(lambda: len(outbox_events(data, "notification.failed")) == 2)
        notifier.wait_for(lambda: outbox_events(data, "notification.unreadable"))
    failed = {e.data["notification_id"]: e for e in outbox_events(data, "notification.failed")}
    assert "'gone' is not in the configuration" in failed[gone.id].data["reason"]
    reason = failed[bad_template.id].data["reason"]
    assert reason.startswith("template of the body does not render") and "finding" in reason
    assert all(e.data["permanent"] is True and e.data["attempts"] == 1 for e in failed.values())
    assert (data.notifications_dir / "failed" / "20000101T000000000000Z-broken.json").exists()
    assert not queued(data) and not recorder.delivered()


@pytest.mark.slow
def test_kill_9_during_a_send_sends_exactly_once(
    tmp_path: Path, data: DataFolder, recorder: Recorder
) -> None:
    recorder.gate.clear()  # a slow peer: holds the request while the notifier is killed
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder, timeout=60)})
    notification = queue(data, "hook")
    with running_notifier(config, tmp_path / "notifier.log") as notifier:
        notifier.wait_for(lambda: recorder.arrived == 1)
        os.kill(notifier.process.pid, signal.SIGKILL)
        notifier.process.wait(10)
    with recorder.lock:
        recorder.fail_first = 1  # the held request was not accepted (the sender is gone)
    recorder.gate.set()
    wait_until(lambda: recorder.refused == 1, timeout=30)
    assert queued(data), "the notification stays queued until its outcome is recorded"
    assert not outbox_events(data, "notification.sent")
    with running_notifier(config, tmp_path / "notifier.log") as notifier:
        notifier.wait_for(lambda: not queued(data) and outbox_events(data, "notification.sent"))
    assert recorder.ids() == [notification.id]
    assert len(outbox_events(data, "notification.sent")) == 1


def test_a_second_notifier_waits_for_the_first(
    tmp_path: Path, data: DataFolder, recorder: Recorder
) -> None:
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder)})
    with running_notifier(config, tmp_path / "first.log") as first:
        first.wait_for(lambda: is_running(data))
        with running_notifier(config, tmp_path / "second.log") as second:
            second.wait_for(lambda: "another notifier holds" in second.log.read_text())
            notification = queue(data, "hook")
            first.wait_for(lambda: not queued(data))
        assert recorder.ids() == [notification.id]


@pytest.mark.slow
def test_outage_then_recovery_delivers_each_once(
    tmp_path: Path, data: DataFolder, recorder: Recorder
) -> None:
    recorder.fail_first = 10**6  # down: every request answered 503
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder)}, max_parallel=8)
    notifications = [queue(data, "hook") for _ in range(100)]
    with running_notifier(config, tmp_path / "notifier.log") as notifier:
        # Down for a while: 200 refused attempts, and every notification had its turn (those
        # falling due again after a refusal do not keep the slots from later ones).
        notifier.wait_for(lambda: recorder.refused >= 200, timeout=60)
        notifier.wait_for(
            lambda: (
                len(
                    {e.data["notification_id"] for e in outbox_events(data, "notification.attempt")}
                )
                == 100
            ),
            timeout=60,
        )
        with recorder.lock:
            recorder.fail_first = 0
        notifier.wait_for(lambda: not queued(data), timeout=60)
        notifier.wait_for(lambda: len(outbox_events(data, "notification.sent")) == 100)
    ids = recorder.ids()
    assert sorted(ids) == sorted(n.id for n in notifications)
    sent = outbox_events(data, "notification.sent")
    assert {e.data["notification_id"] for e in sent} == set(ids)
    assert len(outbox_events(data, "notification.attempt")) == recorder.refused
    assert not outbox_events(data, "notification.failed")


def test_a_reloaded_configuration_changes_the_channel(
    tmp_path: Path, data: DataFolder, recorder: Recorder, free_port: int
) -> None:
    dead = webhook_channel(recorder, url=f"http://127.0.0.1:{free_port}/hooks/{WEBHOOK_TOKEN}")
    config = write_config(tmp_path, data, {"hook": dead})
    notification = queue(data, "hook")
    with running_notifier(config, tmp_path / "notifier.log") as notifier:
        notifier.wait_for(lambda: outbox_events(data, "notification.attempt"))
        write_config(tmp_path, data, {"hook": webhook_channel(recorder)})
        notifier.wait_for(lambda: not queued(data))
    assert recorder.ids() == [notification.id]
    assert outbox_events(data, "config.reloaded")
    reasons = [e.data["reason"] for e in outbox_events(data, "notification.attempt")]
    assert all("ConnectError" in reason for reason in reasons)
    text = outbox_text(data) + (tmp_path / "notifier.log").read_text()
    assert not [secret for secret in SECRETS if secret in text]


def test_attempt_in_process_logs_no_secret(
    data: DataFolder, recorder: Recorder, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = webhook_channel(recorder, url=f"http://127.0.0.1:{free_port}/hooks/{WEBHOOK_TOKEN}")
    loaded = MercureConfig.model_validate(
        {"data_dir": str(data.root), "notifications": {"hook": dead}}
    )
    register_config(loaded)
    notification = queue(data, "hook")
    path = notification_path(data, notification.id)
    outbox = Outbox(data.outbox_dir, "notifier@test")
    events = EventClient(outbox, "notifier", "test")
    next_at = asyncio.run(attempt(path, notification, loaded, events))
    outbox.close()
    assert next_at is not None
    stored = read_notification(path)
    assert stored.attempts == 1 and stored.next_attempt_at == next_at
    assert stored.last_error and "ConnectError" in stored.last_error
    (event,) = outbox_events(data, "notification.attempt")
    assert event.severity == "warning"
    text = caplog.text + outbox_text(data) + path.read_text()
    assert not [secret for secret in SECRETS if secret in text]
