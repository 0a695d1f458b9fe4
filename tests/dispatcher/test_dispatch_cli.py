"""``mercure test-target`` and requeueing a failed task."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from dispatch_site import Site

from mercure.cli.main import main
from mercure.core.datafolder import Stage
from mercure.core.errors import TaskError
from mercure.core.requeue import requeue_failed_dispatch as requeue_task
from mercure.testing.peers import Orthanc, StoreSCP
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series


def test_test_target_reports_writable_folder(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writable folder target passes with a message naming the folder."""
    site.configure({"archive": {"type": "folder", "folder": str(tmp_path)}})
    assert main(["test-target", "archive", "--config", str(site.config_path)]) == 0
    assert capsys.readouterr().out == (
        f"  ok       exists: {tmp_path}\n"
        "  ok       writable: a probe file was written and removed\n"
        f"archive: OK: folder {tmp_path} is writable\n"
    )


def test_test_target_names_unknown_target(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown name fails and lists the configured targets."""
    site.configure(
        {"b": {"type": "folder", "folder": "/tmp"}, "a": {"type": "folder", "folder": "/"}}
    )
    assert main(["test-target", "c", "--config", str(site.config_path)]) == 1
    assert "no target named 'c' in the configuration (known: a, b)" in capsys.readouterr().err


@pytest.mark.peers
def test_test_target_echoes_dicom_target(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """C-ECHO succeeds against storescp and fails clearly when nothing listens."""
    closed = free_port()
    with StoreSCP(tmp_path / "scp") as scp:
        site.configure(
            {
                "up": {"type": "dicom", "host": "127.0.0.1", "port": scp.port, "aet_target": "X"},
                "down": {"type": "dicom", "host": "127.0.0.1", "port": closed},
            }
        )
        assert main(["test-target", "up", "--config", str(site.config_path)]) == 0
        assert f"C-ECHO to X@127.0.0.1:{scp.port} succeeded" in capsys.readouterr().out
    assert main(["test-target", "down", "--config", str(site.config_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"down: FAILED: 127.0.0.1:{closed}: ")
    assert "  FAILED   TCP connect: 127.0.0.1:" in captured.out


def test_test_target_json_reports_each_step_and_the_failed_one(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints one report: the steps that ran, the failed one last, and exit code 1."""
    site.configure({"gone": {"type": "folder", "folder": str(tmp_path / "missing")}})
    assert main(["test-target", "gone", "--json", "--config", str(site.config_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["type"] == "folder"
    assert report["steps"] == [
        {
            "name": "exists",
            "state": "failed",
            "detail": f"folder {tmp_path / 'missing'} does not exist",
        }
    ]


def run_definition(name: str, definition: object, *extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m mercure test-target NAME --definition -`` with ``definition`` on stdin, as
    the web interface runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mercure", "test-target", name, "--definition", "-", *extra],
        input=json.dumps(definition),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MERCURE_CONFIG": "/nonexistent/mercure.yaml"},
    )


@pytest.mark.peers
def test_definition_on_stdin_is_tested_without_a_configuration(storescp: Any) -> None:
    """An unsaved DICOM definition is tested step by step against storescp, no file needed."""
    scp = storescp()
    definition = {"type": "dicom", "host": "127.0.0.1", "port": scp.port, "aet_target": "STORESCP"}
    done = run_definition("new", definition, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(s["name"], s["state"]) for s in report["steps"]] == [
        ("resolve host", "ok"),
        ("TCP connect", "ok"),
        ("TLS handshake", "skipped"),
        ("association accepted", "ok"),
        ("C-ECHO", "ok"),
    ]
    assert report["summary"] == f"C-ECHO to STORESCP@127.0.0.1:{scp.port} succeeded"


def test_invalid_definition_names_the_field() -> None:
    """A definition that is not a valid target says which key is wrong."""
    done = run_definition("new", {"type": "dicom", "host": "h", "port": 0}, "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert "invalid definition of target 'new': port: " in report["summary"]


class _EchoingServer(http.server.BaseHTTPRequestHandler):
    """A careless DICOMweb server: every answer is a 500 quoting the request's headers."""

    def do_GET(self) -> None:
        body = f"internal error handling request with headers:\n{self.headers}".encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.mark.peers
def test_wrong_password_never_appears_in_the_output(tmp_path: Path) -> None:
    """A refused password and a server that echoes it back: neither the password nor its
    Basic form appears in the report, in JSON or text."""
    password = "Wrong-Passw0rd-4711"
    users = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "right"}}
    orthanc = Orthanc(tmp_path / "orthanc-login", config=users)
    orthanc.client.auth = httpx.BasicAuth("alice", "right")  # for its readiness check
    with orthanc:
        _check_wrong_password(orthanc, password)


def _check_wrong_password(orthanc: Orthanc, password: str) -> None:
    definition = {
        "type": "dicomweb",
        "url": orthanc.dicomweb_url,
        "auth": "basic",
        "username": "alice",
        "password": password,
    }
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    for extra in (["--json"], []):
        done = run_definition("pacs", definition, *extra)
        assert done.returncode == 1
        output = done.stdout + done.stderr
        assert password not in output and basic not in output
        assert "refused the credentials (HTTP 401)" in output
    report = json.loads(run_definition("pacs", definition, "--json").stdout)
    assert report["steps"][-1]["name"] == "credentials accepted"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        echoing = {**definition, "url": f"http://127.0.0.1:{server.server_port}/dicom-web"}
        done = run_definition("careless", echoing, "--json")
    finally:
        server.shutdown()
        server.server_close()
    report = json.loads(done.stdout)
    assert report["steps"][-1]["name"] == "QIDO-RS answer"
    assert "HTTP 500" in report["summary"]
    assert password not in done.stdout and basic not in done.stdout


def test_requeued_task_is_delivered_after_the_cause_is_fixed(site: Site, tmp_path: Path) -> None:
    """A task in error/ goes back to outgoing/ with fresh attempts and is then delivered."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    blocker = tmp_path / "archive"
    blocker.write_text("not a folder")
    site.configure({"archive": {"type": "folder", "folder": str(blocker)}}, retry_attempts=1)
    task_id = site.add_task(series.paths, ["archive"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    blocker.unlink()
    requeue_task(site.data, task_id)
    task = site.task_json(task_id)
    assert site.where(task_id) == Stage.OUTGOING
    assert task["info"]["fail_stage"] is None
    assert task["dispatch"]["status"]["archive"]["state"] == "waiting"
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    folder = site.data.stage(Stage.SUCCESS) / task_id
    old_error = json.loads(next(folder.glob("requeued-error-*.json")).read_text())
    assert old_error["fail_stage"] == "dispatch"


def test_requeue_refuses_a_task_that_is_not_in_error(site: Site) -> None:
    """Requeueing an unknown task id says where it looked."""
    with pytest.raises(TaskError, match=r"no task 123 in .*error"):
        requeue_task(site.data, "123")
