"""The users API the web interface signs people in with: key required, no hash or password in
any answer, the same 401 for every refused sign-in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from argon2 import PasswordHasher
from bookkeeper_harness import TOKEN, RunningApp, serve_app
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app
from mercure.bookkeeper.users import UserStore

PASSWORD = "a long enough secret"
WHO = {"actor": "admin", "remote_address": "10.1.2.3"}


@pytest.fixture
def api(engine: Engine) -> Iterator[RunningApp]:
    store = UserStore(engine, PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    yield from serve_app(create_app(engine, api_key=TOKEN, users=store))


def test_users_need_the_key(api: RunningApp) -> None:
    for method, path in (
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/users/x"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/users/verify"),
        ("PATCH", "/api/v1/users/x"),
        ("PUT", "/api/v1/users/x/password"),
        ("DELETE", "/api/v1/users/x"),
    ):
        assert httpx.request(method, api.url + path).status_code == 401, (method, path)


def test_add_sign_in_change_and_remove(api: RunningApp) -> None:
    client = api.client
    assert client.get("/api/v1/users").json() == {"users": []}
    made = client.post(
        "/api/v1/users", json={"name": "Ada", "role": "admin", "password": PASSWORD, **WHO}
    )
    assert made.status_code == 201 and made.json()["role"] == "admin"
    client.post("/api/v1/users", json={"name": "bo", "role": "viewer", "password": PASSWORD, **WHO})
    assert (
        client.post(
            "/api/v1/users", json={"name": "BO", "role": "viewer", "password": PASSWORD, **WHO}
        ).status_code
        == 409
    )
    weak = client.post(
        "/api/v1/users", json={"name": "c", "role": "viewer", "password": "x", **WHO}
    )
    assert weak.status_code == 422 and "at least 12" in weak.json()["detail"]

    signed = client.post("/api/v1/users/verify", json={"name": "ada", "password": PASSWORD})
    assert signed.status_code == 200 and signed.json()["name"] == "Ada"
    refusals = [
        client.post("/api/v1/users/verify", json={"name": n, "password": p})
        for n, p in (("ada", "wrong password!!"), ("nobody", PASSWORD))
    ]
    epoch = client.get("/api/v1/users/bo").json()["session_epoch"]
    changed = client.patch("/api/v1/users/bo", json={"role": "operator", "disabled": True, **WHO})
    assert changed.json()["role"] == "operator" and changed.json()["disabled"]
    assert changed.json()["session_epoch"] == epoch + 2
    refusals.append(client.post("/api/v1/users/verify", json={"name": "bo", "password": PASSWORD}))
    assert [(r.status_code, r.json()) for r in refusals] == [
        (401, {"detail": "wrong user name or password"})
    ] * 3
    assert client.put("/api/v1/users/bo/password", json={"password": "x", **WHO}).status_code == 422
    assert (
        client.put(
            "/api/v1/users/bo/password", json={"password": "another long one", **WHO}
        ).status_code
        == 204
    )
    last = client.delete("/api/v1/users/ada", params=WHO)
    assert last.status_code == 409 and "last enabled admin" in last.json()["detail"]
    assert client.delete("/api/v1/users/bo", params=WHO).status_code == 204
    assert client.get("/api/v1/users/bo").status_code == 404

    answers = " ".join(r.text for r in (made, signed, changed))
    assert PASSWORD not in answers and "argon2" not in answers
    actions = [
        a["action"] for a in client.get("/api/v1/audit", params={"limit": 100}).json()["items"]
    ]
    assert sorted(set(actions)) == [
        "login", "login_failed", "user.create", "user.disable",
        "user.password", "user.remove", "user.role",
    ]  # fmt: skip
