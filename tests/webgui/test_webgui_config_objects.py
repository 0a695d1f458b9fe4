"""The forms of targets and modules show stored values but no secret, and the target test
runner stops a test that takes too long. (That every field has a control is the job of
test_webgui_config_coverage.py, for every configuration page.)"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
from test_webgui_targets import PAGE, configure
from webgui_harness import WebGui

from mercure.webgui.targettest import run_target_test


def test_existing_objects_show_their_values_but_no_secret(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """A saved target's and module's forms show the stored values; secrets never."""
    configure(
        webgui,
        targets={"s": {"type": "sftp", "host": "h.example", "user": "u", "password": "pw-123456",
                       "folder": "/drop"}},
        modules={"m": {"runner": "command", "command": ["/bin/echo", "hi"],
                       "environment": {"KEY": "env-secret-99"}, "settings": {"a": 1}}},
    )  # fmt: skip
    target = viewer.get("/targets/s", headers=PAGE).text
    assert 'name="host" value="h.example"' in target and 'name="folder" value="/drop"' in target
    assert "pw-123456" not in target
    module = viewer.get("/modules/m", headers=PAGE).text
    assert "/bin/echo\nhi</textarea>" in module and "&#34;a&#34;: 1" in module
    assert "env-secret-99" not in module


def test_a_test_that_takes_too_long_is_stopped() -> None:
    """A peer that accepts the connection and never answers: the test process is killed at
    the web interface's limit and the report says so."""
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    try:
        definition = {"type": "dicom", "host": "127.0.0.1", "port": port}
        started = time.monotonic()
        report = asyncio.run(run_target_test("slow", definition, timeout=2.0))
        assert time.monotonic() - started < 6
    finally:
        silent.close()
    assert report.ok is False
    assert report.summary == "the test took longer than 2 s and was stopped"


def test_a_broken_file_is_said_not_a_crash(webgui: WebGui, admin: httpx.Client) -> None:
    """A hand edit that broke mercure.yaml's syntax: the lists still show what is in force
    and say why nothing can be changed; a form says so instead of failing."""
    configure(webgui, targets={"a": {"type": "folder", "folder": "/tmp"}})
    webgui.config_path.write_text("targets: [unclosed\n")
    listing = admin.get("/targets", headers=PAGE)
    assert listing.status_code == 200
    assert "mercure.yaml cannot be read" in listing.text and "/tmp" in listing.text
    assert admin.get("/modules", headers=PAGE).status_code == 200
    form = admin.get("/targets/a", headers=PAGE)
    assert form.status_code == 503 and "mercure.yaml cannot be read" in form.text
