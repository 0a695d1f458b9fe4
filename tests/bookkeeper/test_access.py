"""Who may use the API: the key on every route but /health, from any address."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from bookkeeper_harness import TOKEN, BookkeeperProcess, RunningApp, serve_app
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app, set_api_key
from mercure.core.apikey import ApiKeys, key_path, write_key_file
from mercure.core.config.models import BookkeeperConfig
from mercure.core.delivery import OutboxDeliverer
from mercure.core.events import Event, EventClient, Outbox

BATCH = {"events": [Event(service="t", kind="service.boot").model_dump(mode="json")]}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
def test_api_refuses_a_missing_or_wrong_token(
    bookkeeper: RunningApp, headers: dict[str, str]
) -> None:
    """Writes and reads without the right bearer token are 401, and nothing is stored."""
    with httpx.Client(base_url=bookkeeper.url, headers=headers) as client:
        assert client.post("/api/v1/events", json=BATCH).status_code == 401
        assert client.get("/api/v1/tasks").status_code == 401
    assert bookkeeper.client.get("/api/v1/events").json()["items"] == []


def test_only_health_is_open(bookkeeper: RunningApp) -> None:
    """/health answers without a key; /metrics, the schema and unknown paths need it."""
    with httpx.Client(base_url=bookkeeper.url) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["schema_revision"] is not None
        for path in ("/metrics", "/openapi.json", "/api/v1/queues", "/nowhere"):
            assert client.get(path).status_code == 401, path
    assert bookkeeper.client.get("/metrics").status_code == 200


def test_metrics_can_be_opened_explicitly(engine: Engine) -> None:
    """With metrics_open, /metrics answers without the key; the API still needs it."""
    for served in serve_app(create_app(engine, api_key=TOKEN, metrics_open=True)):
        with httpx.Client(base_url=served.url) as client:
            assert client.get("/metrics").status_code == 200
            assert client.get("/api/v1/tasks").status_code == 401


def test_changed_token_applies_without_restart(bookkeeper: RunningApp) -> None:
    """After a configuration reload the new key is required and the old one refused."""
    set_api_key(bookkeeper.app, "new-key")
    assert bookkeeper.client.get("/api/v1/tasks").status_code == 401
    response = bookkeeper.client.get("/api/v1/tasks", headers={"Authorization": "Bearer new-key"})
    assert response.status_code == 200


def test_previous_keys_are_accepted_during_a_rotation(bookkeeper: RunningApp) -> None:
    """While the old key is listed as previous, both keys work; neither works once dropped."""
    set_api_key(bookkeeper.app, lambda: ("new-key", TOKEN))
    assert bookkeeper.client.get("/api/v1/tasks").status_code == 200
    new = {"Authorization": "Bearer new-key"}
    assert bookkeeper.client.get("/api/v1/tasks", headers=new).status_code == 200
    set_api_key(bookkeeper.app, "newer-key")
    assert bookkeeper.client.get("/api/v1/tasks").status_code == 401
    assert bookkeeper.client.get("/api/v1/tasks", headers=new).status_code == 401


@pytest.mark.slow
def test_without_a_configured_key_loopback_is_refused_too(tmp_path: Path) -> None:
    """No api_key in mercure.yaml: the bookkeeper makes the data folder's key and refuses a
    forged task.completed and a forged audit login from 127.0.0.1 without it (the error task
    stays an error); with the key from the file, the API answers."""
    bookkeeper = BookkeeperProcess(tmp_path, None, api_key=None)
    try:
        bookkeeper.start()
        failed = Event(service="dispatcher", kind="task.failed", task_id="t-1", severity="error")
        forged = Event(service="dispatcher", kind="task.completed", task_id="t-1")
        audit = Event(service="webgui", kind="audit.login", data={"user": "admin"})
        with httpx.Client(base_url=bookkeeper.url) as anyone:
            for event in (forged, audit):
                batch = {"events": [event.model_dump(mode="json")]}
                assert anyone.post("/api/v1/events", json=batch).status_code == 401
        key = key_path(tmp_path / "data").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=bookkeeper.url, headers=headers) as owner:
            batch = {"events": [failed.model_dump(mode="json")]}
            assert owner.post("/api/v1/events", json=batch).status_code == 200
            assert owner.get("/api/v1/tasks/t-1").json()["task"]["state"] == "error"
            assert owner.get("/api/v1/audit").json()["items"] == []
        assert bookkeeper.signal(signal.SIGTERM) == 0
        assert key not in bookkeeper.log.read_text()
    finally:
        bookkeeper.close()


def test_openapi_documents_the_read_and_write_api(bookkeeper: RunningApp) -> None:
    """The OpenAPI schema lists every route and the bearer scheme."""
    schema = bookkeeper.client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/api/v1/events",
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/timeline",
        "/api/v1/tasks/{task_id}/versions",
        "/api/v1/series",
        "/api/v1/statistics",
        "/api/v1/queues",
        "/api/v1/rules/hits",
        "/api/v1/audit",
        "/health",
        "/metrics",
    } <= paths
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    task_params = {p["name"] for p in schema["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert {"accession", "patient_id", "series_uid", "study_uid", "rule", "target", "state"} <= (
        task_params
    )


def test_no_page_loads_scripts_from_a_cdn(bookkeeper: RunningApp) -> None:
    """FastAPI's CDN-backed /docs and /redoc pages are not served."""
    assert bookkeeper.client.get("/docs").status_code == 404
    assert bookkeeper.client.get("/redoc").status_code == 404


def test_events_refused_for_their_key_stay_and_go_once_it_is_right(
    engine: Engine, tmp_path: Path
) -> None:
    """A service with a wrong key keeps its events in the outbox (401 is retried, never a
    reason to drop); after its key file is replaced by the right key they are delivered."""
    bookkeeper_keys = ApiKeys(BookkeeperConfig(), tmp_path / "bookkeeper")
    sender_data = tmp_path / "sender"
    outbox = Outbox(sender_data / "outbox", "router@test")
    events = EventClient(outbox, "router", "test")
    for served in serve_app(create_app(engine, api_key=bookkeeper_keys.accepted)):
        deliverer = OutboxDeliverer(
            events, served.url, ApiKeys(BookkeeperConfig(), sender_data).current
        )
        try:
            emitted = [events.emit("rule.notification").id for _ in range(3)]
            assert not deliverer.deliver_pending()
            assert deliverer.failures == 1 and "401" in (deliverer.last_error or "")
            assert len(outbox.sealed_segments()) == 1

            write_key_file(sender_data, bookkeeper_keys.current())
            assert deliverer.deliver_pending()
            headers = {"Authorization": f"Bearer {bookkeeper_keys.current()}"}
            stored = served.client.get("/api/v1/events", headers=headers).json()["items"]
            assert sorted(item["id"] for item in stored) == sorted(emitted)
            assert outbox.sealed_segments() == []
        finally:
            deliverer.close()
            outbox.close()


@pytest.mark.slow
def test_rotating_the_key_file_keeps_the_old_key_until_forgotten(tmp_path: Path) -> None:
    """`mercure rotate-api-key` against a running bookkeeper: the new key works at once, the
    old one until `--forget-previous`; a service sending with the key file follows; the key
    never appears in the command's output."""
    bookkeeper = BookkeeperProcess(tmp_path, None, api_key=None)
    data = tmp_path / "data"
    rotate = [sys.executable, "-m", "mercure", "rotate-api-key", "--config", str(bookkeeper.config)]

    def status(key: str) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.get(f"{bookkeeper.url}/api/v1/queues", headers=headers).status_code

    try:
        bookkeeper.start()
        old = key_path(data).read_text().strip()
        done = subprocess.run(rotate, capture_output=True, text=True, check=True, timeout=60)
        new = key_path(data).read_text().strip()
        assert new != old and old not in done.stdout and new not in done.stdout
        assert (status(old), status(new)) == (200, 200)

        outbox = Outbox(data / "outbox", "router@test")
        events = EventClient(outbox, "router", "test")
        sender = OutboxDeliverer(events, bookkeeper.url, ApiKeys(BookkeeperConfig(), data).current)
        try:
            events.emit("rule.notification")
            assert sender.deliver_pending()
        finally:
            sender.close()
            outbox.close()

        subprocess.run([*rotate, "--forget-previous"], capture_output=True, check=True, timeout=60)
        assert (status(old), status(new)) == (401, 200)
    finally:
        bookkeeper.close()


def test_rotating_a_configured_key_is_refused(tmp_path: Path) -> None:
    """With bookkeeper.api_key in the configuration the command says to rotate it there."""
    config = tmp_path / "mercure.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nbookkeeper: {{api_key: {TOKEN}}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "mercure", "rotate-api-key", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "previous_api_keys" in done.stderr
    assert TOKEN not in done.stderr + done.stdout
