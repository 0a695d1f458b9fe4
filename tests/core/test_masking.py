"""Secret masking: the registry, the credential patterns, and where scrubbing is applied in core
(log lines, events, failure reasons in task.json and error.json)."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mercure.core import masking
from mercure.core.config import load_config, parse_document, validate_document
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import EventClient, Outbox, read_segment
from mercure.core.logs import configure_logging
from mercure.core.task import (
    TargetStatus,
    Task,
    TaskDispatch,
    TaskInfo,
    fail_task,
    read_task,
    write_task,
)

SECRET = "pa55-Word-91x"


@pytest.fixture
def registry() -> Iterator[masking.SecretRegistry]:
    """The process registry, emptied before and after the test."""
    masking.registry().clear()
    yield masking.registry()
    masking.registry().clear()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_registered_secret_and_its_forms_are_masked(registry: masking.SecretRegistry) -> None:
    """The value, its JSON escape and its Base64 forms all become ***."""
    registry.register('quote"and\\back')
    registry.register(SECRET)
    assert masking.scrub(f"login with {SECRET} failed") == "login with *** failed"
    assert masking.scrub(json.dumps({"x": 'quote"and\\back'})) == '{"x": "***"}'
    assert b64(SECRET).rstrip("=") not in masking.scrub(f"token {b64(SECRET)}")
    urlsafe = base64.urlsafe_b64encode(SECRET.encode()).decode()
    assert masking.scrub(urlsafe) in ("***", "***=", "***==")


def test_basic_login_is_masked_as_its_base64_pair(registry: masking.SecretRegistry) -> None:
    """`user:password` in Base64 (the Basic credential) is masked even without the scheme."""
    registry.register_basic_auth("alice", SECRET)
    pair = b64(f"alice:{SECRET}")
    assert masking.scrub(f'{{"auth": "{pair}"}}') == '{"auth": "***"}'


def test_short_values_are_not_registered(registry: masking.SecretRegistry) -> None:
    """A 3-character secret would mask ordinary text everywhere: it is left alone."""
    registry.register("abc")
    assert masking.scrub("abc def") == "abc def"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("request had Authorization: Bearer eyJhbGciOi.J9x-y", "request had Authorization: ***"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "***"}'),
        ("headers={'Authorization': 'token abcdef123'}", "headers={'Authorization': '***'}"),
        ("send Bearer abcdefgh12345678 now", "send Bearer *** now"),
        (f"got Basic {b64('bob:hunter22')}", "got Basic ***"),
        (
            "Basic Application Level Confidentiality Profile",
            "Basic Application Level Confidentiality Profile",
        ),
        ("the server refused authorization: wrong", "the server refused authorization: wrong"),
        ("Authorization: ***", "Authorization: ***"),
    ],
)
def test_credential_shaped_values_are_masked_without_registration(
    registry: masking.SecretRegistry, text: str, expected: str
) -> None:
    """Unknown credentials echoed by a peer are recognised by their shape; prose is kept."""
    assert masking.scrub(text) == expected


def test_excerpt_is_short_one_line_and_scrubbed_before_it_is_cut(
    registry: masking.SecretRegistry,
) -> None:
    """A secret straddling the cut is masked whole, not left half visible."""
    registry.register(SECRET)
    text = "x" * 195 + SECRET + "\n" + "y" * 500
    quoted = masking.excerpt(text)
    assert len(quoted) <= masking.EXCERPT_LIMIT
    assert "\n" not in quoted and SECRET[:4] not in quoted


def test_scrub_file_replaces_a_log_only_when_needed(
    registry: masking.SecretRegistry, tmp_path: Path
) -> None:
    """A module log holding a secret is rewritten; a clean one is left as it is."""
    registry.register(SECRET)
    dirty, clean = tmp_path / "dirty.log", tmp_path / "clean.log"
    dirty.write_bytes(f"start\ntoken {SECRET}\n\xff end".encode("latin-1"))
    clean.write_text("nothing to hide\n")
    inode = clean.stat().st_ino
    assert masking.scrub_file(dirty) and not masking.scrub_file(clean)
    assert dirty.read_bytes() == b"start\ntoken ***\n\xff end"
    assert clean.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.log", "dirty.log"]


def test_loading_a_configuration_registers_its_secrets(
    registry: masking.SecretRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SecretStr settings, Basic logins, every `${VAR}` value of a module's environment and the
    database URL's password are registered when the file is loaded; plain settings are not."""
    monkeypatch.setenv("PACS_PASSWORD", SECRET)
    monkeypatch.setenv("MODULE_TOKEN", "module-token-77")
    monkeypatch.setenv("MODEL_DIR", "/srv/models")
    config = tmp_path / "mercure.yaml"
    config.write_text(
        "targets:\n"
        "  web: {type: dicomweb, url: 'https://h/dw', auth: basic, username: alice,"
        " password: '${PACS_PASSWORD}'}\n"
        "  s3: {type: s3, bucket: b, secret_access_key: s3-secret-key}\n"
        "modules:\n"
        "  m: {runner: command, command: [x], environment:"
        " {TOKEN: '${MODULE_TOKEN}', MODELS: '${MODEL_DIR}', LITERAL: 'plain-value'}}\n"
        "bookkeeper:\n"
        "  api_key: bookkeeper-key-1\n"
        "  database_url: 'postgresql+psycopg://mercure:db%40pass@127.0.0.1/m'\n"
    )
    load_config(config)
    text = (
        f"{SECRET} {b64('alice:' + SECRET)} s3-secret-key module-token-77 bookkeeper-key-1 "
        "db%40pass db@pass /srv/models plain-value alice"
    )
    assert masking.scrub(text) == "*** *** *** *** *** *** *** *** plain-value alice"


def test_validating_a_document_registers_nothing(registry: masking.SecretRegistry) -> None:
    """Only a configuration a process loads to run with registers secrets (not a candidate)."""
    validate_document(
        parse_document("bookkeeper: {api_key: candidate-key}\n", "x.yaml"), environ={}
    )
    assert len(registry) == 0


def test_log_lines_and_exceptions_are_scrubbed(registry: masking.SecretRegistry) -> None:
    """Message, arguments and traceback of a record pass the filter on the handler."""
    registry.register(SECRET)
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    log = logging.getLogger("mercure.test.masking")
    log.warning("login %s refused; Authorization: Bearer abcdefgh12345678", SECRET)
    try:
        raise ValueError(f"peer said {SECRET}")
    except ValueError:
        log.exception("failed")
    configure_logging("INFO", "json", stream=stream)
    log.error("json %s", SECRET)
    text = stream.getvalue()
    assert SECRET not in text and "abcdefgh12345678" not in text
    assert "login *** refused; Authorization: ***" in text
    assert "ValueError: peer said ***" in text and '"message": "json ***"' in text


def test_http_client_request_logs_are_off_at_info() -> None:
    """httpx logs every request (URL included) at INFO: its loggers are set to WARNING."""
    configure_logging("DEBUG", "text", stream=io.StringIO())
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING


def test_events_are_scrubbed_in_message_and_data(
    registry: masking.SecretRegistry, tmp_path: Path
) -> None:
    """An emitted event's message and nested data hold no secret, in the outbox either."""
    registry.register(SECRET)
    outbox = Outbox(tmp_path / "outbox", "test@here")
    events = EventClient(outbox, "test")
    events.emit(
        "dispatch.failed",
        message=f"peer echoed {SECRET}",
        reason=f"HTTP 500: Authorization: Basic {b64('u:' + SECRET)}",
        task={"info": {"reason": [SECRET]}},
    )
    outbox.close()
    (segment,) = (tmp_path / "outbox" / "test@here").glob("*.jsonl")
    (event,) = read_segment(segment)
    assert event.message == "peer echoed ***"
    assert event.data["reason"] == "HTTP 500: Authorization: ***"
    assert event.data["task"] == {"info": {"reason": ["***"]}}
    assert SECRET not in segment.read_text()


def test_failure_reasons_in_task_and_error_files_are_scrubbed(
    registry: masking.SecretRegistry, tmp_path: Path
) -> None:
    """fail_task and write_task keep secrets out of error.json and every reason in task.json."""
    registry.register(SECRET)
    data = DataFolder(tmp_path / "data")
    data.ensure()
    task_dir = data.stage(Stage.OUTGOING) / "t1"
    task_dir.mkdir()
    task = Task(
        id="t1",
        info=TaskInfo(action="route", uid="1.2.3"),
        dispatch=TaskDispatch(
            target_name=["web"], status={"web": TargetStatus(reason=f"echo {SECRET}")}
        ),
    )
    write_task(task_dir, task)
    assert SECRET not in (task_dir / "task.json").read_text()
    moved = fail_task(task_dir, data, stage="dispatch", reason=f"web: {SECRET}", service="x")
    assert read_task(moved).info.reason == "web: ***"
    assert read_task(moved).dispatch.status["web"].reason == "echo ***"  # type: ignore[union-attr]
    assert json.loads((moved / "error.json").read_text())["reason"] == "web: ***"
