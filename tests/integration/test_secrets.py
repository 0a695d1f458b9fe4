"""No secret leaks from a whole run: `mercure run` with credentials given as `${ENV}`, a DICOMweb
target on an Orthanc that requires a login, and targets that fail and echo the credentials they
received; then every log, task file, event and bookkeeper answer of the run is searched."""

from __future__ import annotations

import base64
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mercure.testing.installation import (
    API_KEY,
    BookkeeperClient,
    MercureProcess,
    OutboxRecorder,
    copy_module,
    write_config,
)
from mercure.testing.peers import Orthanc
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]

ORTHANC_USER = "mercure-router"
SECRETS = {
    "ORTHANC_PASSWORD": "orthanc-pw-Zq81xv",
    "ECHO_TOKEN": "echo-bearer-Tk5592ab",
    "ECHO_PASSWORD": "echo-basic-pw-Ww03",
    "MODULE_TOKEN": "module-token-Mm7731",
    "MERCURE_TEST_API_KEY": API_KEY,
}
"""Each configured secret, by the environment variable that gives it to `mercure run`."""
BASIC_LOGINS = [
    (ORTHANC_USER, SECRETS["ORTHANC_PASSWORD"]),
    ("echo-user", SECRETS["ECHO_PASSWORD"]),
]

TALKATIVE_MODULE = """
import os, runpy, sys
print("environment:", sorted(os.environ), flush=True)
print("calling the service with token", os.environ["SERVICE_TOKEN"], flush=True)
runpy.run_path(sys.argv[1])
"""
"""A module that prints the token it was given (a careless module), then copies its input."""


def forms(secret: str) -> list[str]:
    """A secret as it may appear: itself and its Base64 (standard and URL-safe, unpadded)."""
    encoded = base64.b64encode(secret.encode())
    return [
        secret,
        encoded.decode().rstrip("="),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
    ]


FORBIDDEN = [
    form
    for secret in [*SECRETS.values(), *(f"{user}:{password}" for user, password in BASIC_LOGINS)]
    for form in forms(secret)
]


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with HTTP 500 and the credentials it received, as bad servers do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (
            f"internal error while storing; request had Authorization: "
            f"{self.headers.get('Authorization')}\n"
        ).encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what mercure-router logged, not this server."""


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A local HTTP server that fails every STOW-RS and echoes the Authorization header; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, name="echo server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def orthanc_with_login(tmp_path: Path) -> Iterator[Orthanc]:
    """An Orthanc whose HTTP API (DICOMweb included) requires basic authentication."""
    users = {
        "AuthenticationEnabled": True,
        "RegisteredUsers": {ORTHANC_USER: SECRETS["ORTHANC_PASSWORD"]},
    }
    orthanc = Orthanc(tmp_path / "orthanc-login", config=users)
    orthanc.client.auth = httpx.BasicAuth(ORTHANC_USER, SECRETS["ORTHANC_PASSWORD"])
    with orthanc:
        yield orthanc


@dataclass
class Run:
    """The running installation and what the test reads back from it."""

    mercure: MercureProcess
    bookkeeper: BookkeeperClient
    outbox: OutboxRecorder
    data_dir: Path


@pytest.fixture
def installation(tmp_path: Path, orthanc_with_login: Orthanc, echo_server: str) -> Iterator[Run]:
    """`mercure run` with every secret given by `${ENV}`."""
    receiver_port, bookkeeper_port = free_port(), free_port()
    (tmp_path / "talkative.py").write_text(TALKATIVE_MODULE)
    copier = copy_module(tmp_path)
    talkative = {
        "runner": "command",
        "command": [sys.executable, str(tmp_path / "talkative.py"), copier["command"][1]],
        "environment": {"SERVICE_TOKEN": "${MODULE_TOKEN}"},
    }
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        targets={
            "orthanc": {
                "type": "dicomweb",
                "url": orthanc_with_login.dicomweb_url,
                "auth": "basic",
                "username": ORTHANC_USER,
                "password": "${ORTHANC_PASSWORD}",
            },
            "echo-bearer": {
                "type": "dicomweb",
                "url": echo_server,
                "auth": "bearer",
                "token": "${ECHO_TOKEN}",
            },
            "echo-basic": {
                "type": "dicomweb",
                "url": echo_server,
                "auth": "basic",
                "username": "echo-user",
                "password": "${ECHO_PASSWORD}",
            },
        },
        modules={"talkative": talkative},
        rules={
            "delivered": {
                "rule": "tags.SeriesDescription == 'delivered'",
                "action": "both",
                "processing_module": ["talkative"],
                "targets": ["orthanc"],
            },
            "echoed": {
                "rule": "tags.SeriesDescription == 'echoed'",
                "action": "route",
                "targets": ["echo-bearer", "echo-basic"],
            },
        },
    )
    document = yaml.safe_load(config.read_text())
    document["bookkeeper"]["api_key"] = "${MERCURE_TEST_API_KEY}"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    data_dir = Path(document["data_dir"])
    outbox = OutboxRecorder(tmp_path / "events").start()
    mercure = MercureProcess(
        "run",
        config,
        listen_port=receiver_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    mercure.env.update(SECRETS)
    mercure.env.update(outbox.env())
    client = BookkeeperClient(bookkeeper_port)
    try:
        with mercure:
            yield Run(mercure, client, outbox, data_dir)
    finally:
        outbox.stop()
        client.close()


def _bookkeeper_answers(bookkeeper: BookkeeperClient) -> list[str]:
    """Every read API answer about the run, as text."""
    answers = [
        httpx.Response(200, json=bookkeeper.events()).text,
        httpx.Response(200, json=bookkeeper.series()).text,
        bookkeeper.client.get("/api/v1/queues").text,
        bookkeeper.client.get("/api/v1/statistics").text,
        bookkeeper.client.get("/metrics").text,
    ]
    for task in bookkeeper.tasks():
        answers.append(httpx.Response(200, json=task).text)
        for path in ("", "/timeline", "/versions"):
            answers.append(bookkeeper.client.get(f"/api/v1/tasks/{task['task_id']}{path}").text)
    return answers


def _leaks(where: str, text: str) -> list[str]:
    return [f"{where}: {form!r}" for form in FORBIDDEN if form in text]


def test_no_configured_secret_appears_in_logs_task_files_events_or_the_bookkeeper(
    tmp_path: Path, orthanc_with_login: Orthanc, installation: Run
) -> None:
    """A delivered series (login to Orthanc, a module given a token) and one whose targets echo
    the credentials in their error answers: no secret in any form is written or answered."""
    delivered = generate_series(tmp_path / "delivered", "tiny", 2, series_description="delivered")
    echoed = generate_series(tmp_path / "echoed", "tiny", 2, seed=7, series_description="echoed")
    port = installation.mercure.listen_port
    assert port is not None
    for series in (delivered, echoed):
        storescu(port, series.folder, calling_aet="CT01", called_aet="MERCURE")

    bookkeeper = installation.bookkeeper

    def finished() -> bool:
        return sorted(task["state"] for task in bookkeeper.tasks()) == ["error", "success"]

    wait_until(finished, timeout=60, interval=0.2, message="both tasks finished in bookkeeper")
    assert orthanc_with_login.sop_instance_uids() == delivered.sop_instance_uids
    (failed,) = bookkeeper.tasks(state="error")
    # The reasons still say what went wrong; only the credentials are masked.
    assert "echo-bearer:" in failed["fail_reason"] and "HTTP 500" in failed["fail_reason"]
    assert "Authorization: ***" in failed["fail_reason"]
    answers = _bookkeeper_answers(bookkeeper)
    (run,) = bookkeeper.task(bookkeeper.tasks(state="success")[0]["task_id"])["processing"]
    assert "calling the service with token ***" in run["log"]
    assert installation.mercure.shutdown() == 0, installation.mercure.log_text()

    leaks: list[str] = []
    for index, answer in enumerate(answers):
        leaks += _leaks(f"bookkeeper answer {index}", answer)
    events = installation.outbox.events()
    for event in events:
        leaks += _leaks(f"event {event.kind} of {event.service}", event.model_dump_json())
    # The tap saw every service that handled the series (else it recorded nothing to search).
    assert {"receiver", "router", "dispatcher"} <= {event.service for event in events}
    files = [p for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    files += [p for p in installation.data_dir.rglob("*") if p.is_file() and p.suffix != ".dcm"]
    assert any(p.name == "error.json" for p in files) and any(p.name == "task.json" for p in files)
    for path in files:
        leaks += _leaks(str(path), path.read_bytes().decode("utf-8", "replace"))
    assert not leaks, "\n".join(leaks)
