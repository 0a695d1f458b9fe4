"""receiver.stow and webgui.upload_sender in `mercure check-config`: mistakes named, tokens
never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mercure.cli.main import main

TOKEN_A = "sender-a-token-0123456789"
TOKEN_B = "sender-b-token-0123456789"


def _check(
    tmp_path: Path, document: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    config = tmp_path / "mercure.yaml"
    config.write_text(yaml.safe_dump(document))
    code = main(["check-config", "--config", str(config)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _stow(**senders: str) -> dict[str, object]:
    return {"stow": {"senders": {name: {"token": token} for name, token in senders.items()}}}


def test_upload_sender_must_be_a_stow_sender(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """webgui.upload_sender naming no sender (or without stow) is an error naming the key."""
    document = {"receiver": _stow(lab=TOKEN_A), "webgui": {"upload_sender": "web"}}
    code, out = _check(tmp_path, document, capsys)
    assert code == 1
    assert "webgui.upload_sender 'web' is not one of receiver.stow.senders" in out
    code, out = _check(tmp_path, {"webgui": {"upload_sender": "web"}}, capsys)
    assert code == 1
    assert "needs receiver.stow" in out
    document["webgui"] = {"upload_sender": "lab"}
    assert _check(tmp_path, document, capsys)[0] == 0


def test_two_senders_with_one_token_are_refused_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each sender needs its own token; the error names the senders, not the token."""
    code, out = _check(tmp_path, {"receiver": _stow(a=TOKEN_A, b=TOKEN_A)}, capsys)
    assert code == 1
    assert "receiver.stow: senders 'a' and 'b' have the same token" in out
    assert TOKEN_A not in out
    assert _check(tmp_path, {"receiver": _stow(a=TOKEN_A, b=TOKEN_B)}, capsys)[0] == 0


def test_short_token_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A guessable token is refused at the key that holds it."""
    code, out = _check(tmp_path, {"receiver": _stow(a="short")}, capsys)
    assert code == 1
    assert "receiver.stow.senders.a.token: too short" in out
    assert "short'" not in out
