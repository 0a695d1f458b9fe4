"""Who may use the API: the token, the loopback rule without one, open health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from bookkeeper_harness import TOKEN, RunningApp, serve_app
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app, is_loopback, set_api_key
from mercure.core.events import Event

BATCH = {"events": [Event(service="t", kind="service.boot").model_dump(mode="json")]}


@pytest.fixture
def open_bookkeeper(engine: Engine) -> Iterator[RunningApp]:
    """A bookkeeper without api_key, served on loopback."""
    yield from serve_app(create_app(engine, api_key=None))


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


def test_health_and_metrics_need_no_token(bookkeeper: RunningApp) -> None:
    """Monitoring endpoints answer without a token."""
    with httpx.Client(base_url=bookkeeper.url) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["schema_revision"] is not None
        assert client.get("/metrics").status_code == 200


def test_changed_token_applies_without_restart(bookkeeper: RunningApp) -> None:
    """After a configuration reload the new key is required and the old one refused."""
    set_api_key(bookkeeper.app, "new-key")
    assert bookkeeper.client.get("/api/v1/tasks").status_code == 401
    response = bookkeeper.client.get("/api/v1/tasks", headers={"Authorization": "Bearer new-key"})
    assert response.status_code == 200


def test_without_api_key_loopback_clients_are_served(open_bookkeeper: RunningApp) -> None:
    """No api_key configured: a client on 127.0.0.1 may write and read without a token."""
    with httpx.Client(base_url=open_bookkeeper.url) as client:
        assert client.post("/api/v1/events", json=BATCH).json() == {"stored": 1, "duplicates": 0}
        assert len(client.get("/api/v1/events").json()["items"]) == 1


def test_without_api_key_remote_clients_are_refused(engine: Engine) -> None:
    """No api_key configured: a client from another address gets 403; health stays open."""
    transport = httpx.ASGITransport(create_app(engine, api_key=None), client=("10.1.2.3", 40000))

    async def requests() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://bookkeeper") as client:
            return await client.post("/api/v1/events", json=BATCH), await client.get("/health")

    refused, health = asyncio.run(requests())
    assert refused.status_code == 403
    assert "api_key" in refused.json()["detail"]
    assert health.status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", False),
        ("::ffff:10.1.2.3", False),
        ("testclient", False),
        ("", False),
    ],
)
def test_loopback_addresses_are_recognised(host: str, loopback: bool) -> None:
    """Only loopback addresses count as this host."""
    assert is_loopback(host) is loopback


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
