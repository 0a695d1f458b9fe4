"""``mercure notify-test``: the test notification through a configured channel or a definition
on standard input, against the HTTP recorder and the SMTP server; answers and masked errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from notifier_helpers import (
    HEADER_SECRET,
    SECRETS,
    WEBHOOK_TOKEN,
    Recorder,
    email_channel,
    smtp_server,
    webhook_channel,
    write_config,
)

from mercure.cli.main import main
from mercure.core.datafolder import DataFolder
from mercure.core.notifications.queue import queued


def test_webhook_channel(
    tmp_path: Path, data: DataFolder, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder)})
    assert main(["notify-test", "hook", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "hook: OK: HTTP 200"
    (request,) = recorder.delivered()
    assert request.headers["X-Mercure-Event"] == "test"
    assert json.loads(request.body)["event"] == "test"
    assert not queued(data), "sent directly, not through the queue"


def test_email_channel_json(
    tmp_path: Path, data: DataFolder, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with smtp_server(pki) as (box, port):
        config = write_config(tmp_path, data, {"mail": email_channel(port, pki)})
        assert main(["notify-test", "mail", "--json", "--config", str(config)]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["ok"] is True and outcome["type"] == "email"
    assert outcome["answer"].startswith("250") and outcome["error"] == ""
    assert len(box.messages) == 1


def test_failure_is_masked_and_exits_1(
    tmp_path: Path, data: DataFolder, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder.status = 403
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder)})
    assert main(["notify-test", "hook", "--json", "--config", str(config)]) == 1
    output = capsys.readouterr().out
    outcome = json.loads(output)
    assert outcome["ok"] is False and outcome["error"] == "HTTP 403 Forbidden"
    assert main(["notify-test", "nothing", "--config", str(config)]) == 1
    assert "no channel 'nothing'" in capsys.readouterr().err
    assert not [secret for secret in SECRETS if secret in output]


def test_definition_on_stdin_keeps_stored_secrets(
    tmp_path: Path,
    data: DataFolder,
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, data, {"hook": webhook_channel(recorder)})
    edited = {
        **webhook_channel(recorder),
        "url": "<secret>",
        "headers": {"Authorization": "<secret>", "X-Extra": "1"},
        "hmac_secret": "<secret>",
        "body": '{"edited": {{ event | tojson }}}',
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(edited)))
    assert main(["notify-test", "hook", "--definition", "-", "--config", str(config)]) == 0
    (request,) = recorder.delivered()
    assert request.path.endswith(WEBHOOK_TOKEN)
    assert request.headers["Authorization"] == HEADER_SECRET
    assert request.headers["X-Extra"] == "1"
    assert json.loads(request.body) == {"edited": "test"}
    capsys.readouterr()


def test_invalid_definition_says_why_without_secrets(
    tmp_path: Path,
    data: DataFolder,
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, data, {})
    definition = {"type": "webhook", "url": f"ftp://x/{WEBHOOK_TOKEN}", "timeout": -1}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(definition)))
    assert main(["notify-test", "new", "--definition", "-", "--config", str(config)]) == 1
    error = capsys.readouterr().err
    assert "invalid definition of channel 'new'" in error and "timeout" in error
    assert WEBHOOK_TOKEN not in error
