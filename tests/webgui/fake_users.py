"""FAKE of the bookkeeper's user endpoints, until the real user store (branch webgui-users)
is merged: the contract of issue 13, in memory, with plain-text passwords.

Used only for ``/api/v1/users*``; every other bookkeeper call in these tests goes to the real
bookkeeper application. Delete this file and :func:`with_fake_users` once the real endpoints
exist, and create users through them instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

USERS_PREFIX = "/api/v1/users"


class FakeUser(BaseModel):
    name: str
    role: str
    disabled: bool = False
    session_epoch: int = 0
    created: datetime
    updated: datetime
    last_login: datetime | None = None
    password_changed: datetime
    password: str


def _now() -> datetime:
    return datetime.now(UTC)


class FakeUserStore:
    """The users, and the FastAPI app that serves them like the contract says."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.users: dict[str, FakeUser] = {}
        self.app = self._make_app()

    def add(self, name: str, role: str, password: str) -> None:
        now = _now()
        self.users[name] = FakeUser(
            name=name, role=role, created=now, updated=now, password_changed=now, password=password
        )

    def bump(self, name: str, **changes: Any) -> None:
        """Change a user as the real store would (role, disabled, password): epoch + 1."""
        user = self.users[name]
        for key, value in changes.items():
            setattr(user, key, value)
        user.session_epoch += 1

    def _record(self, user: FakeUser) -> dict[str, Any]:
        return user.model_dump(mode="json", exclude={"password"})

    def _make_app(self) -> FastAPI:
        app = FastAPI()

        def check(authorization: str | None) -> None:
            if authorization != f"Bearer {self.token}":
                raise HTTPException(401, "missing or wrong API key")

        @app.post(USERS_PREFIX + "/verify")
        def verify(body: dict[str, Any], authorization: str | None = Header(None)) -> Any:
            check(authorization)
            user = self.users.get(body.get("name", ""))
            if user is None or user.disabled or user.password != body.get("password"):
                raise HTTPException(401, "wrong user name or password")
            user.last_login = _now()
            return self._record(user)

        @app.get(USERS_PREFIX)
        def list_users(authorization: str | None = Header(None)) -> Any:
            check(authorization)
            return {"users": [self._record(u) for u in self.users.values()]}

        @app.get(USERS_PREFIX + "/{name}")
        def get_user(name: str, authorization: str | None = Header(None)) -> Any:
            check(authorization)
            if name not in self.users:
                raise HTTPException(404, "no such user")
            return self._record(self.users[name])

        @app.post(USERS_PREFIX, status_code=201)
        def create(body: dict[str, Any], authorization: str | None = Header(None)) -> Any:
            check(authorization)
            if body["name"] in self.users:
                raise HTTPException(409, "user exists")
            self.add(body["name"], body["role"], body["password"])
            return self._record(self.users[body["name"]])

        @app.delete(USERS_PREFIX + "/{name}", status_code=204)
        def delete(name: str, authorization: str | None = Header(None)) -> Response:
            check(authorization)
            self.users.pop(name, None)
            return Response(status_code=204)

        return app


def with_fake_users(bookkeeper: ASGIApp, store: FakeUserStore) -> ASGIApp:
    """The real bookkeeper app, with ``/api/v1/users*`` answered by the fake store."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(USERS_PREFIX):
            await store.app(scope, receive, send)
        else:
            await bookkeeper(scope, receive, send)

    return app


def forwarding_bookkeeper(real_url: str, store: FakeUserStore) -> ASGIApp:
    """An ASGI app: ``/api/v1/users*`` from the FAKE store, everything else forwarded to the
    real bookkeeper at ``real_url`` (502 while it does not answer)."""
    import httpx

    async def forward(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"host", b"content-length")]
        url = (
            real_url
            + scope["path"]
            + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await client.request(scope["method"], url, headers=headers, content=body)
            status, content = answer.status_code, answer.content
            out = [
                (k.encode(), v.encode())
                for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
            ]
        except httpx.TransportError:
            status, content, out = 502, b"bookkeeper not reachable", []
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": content})

    return with_fake_users(forward, store)
