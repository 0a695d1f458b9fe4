"""Every route, enumerated from the app: who may use it, and CSRF on every change.

Not a hand-picked list: a route added later is checked the moment it exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from webgui_harness import WebGui, csrf_of

from mercure.webgui.auth import AccessRule, access_rules, app_routes, check_routes_declare_access
from mercure.webgui.roles import Role

PUBLIC = {("GET", "/login"), ("POST", "/login")}
"""The only routes anyone may use."""
PAGE = {"accept": "text/html"}
ROLES = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]


def endpoints(webgui: WebGui) -> Iterator[tuple[str, str, AccessRule]]:
    """(method, concrete path, access rule) of every route of the app."""
    for info in app_routes(webgui.app):
        [rule] = access_rules(info.route)
        path = re.sub(r"\{[^}]+\}", "x", info.path)
        for method in sorted(info.methods):
            yield method, path, rule


def test_public_routes_are_only_the_sign_in(webgui: WebGui) -> None:
    """public() is declared on the sign-in page and its form, nothing else."""
    public = {(m, p) for m, p, rule in endpoints(webgui) if rule.role is None}
    assert public == PUBLIC


def test_every_route_refuses_an_anonymous_request(webgui: WebGui, anonymous: httpx.Client) -> None:
    """Pages redirect to the sign-in page, everything else is 401; never content."""
    checked = 0
    for method, path, rule in endpoints(webgui):
        if rule.role is None:
            continue
        for headers in (PAGE, {"hx-request": "true"}, {"accept": "application/json"}):
            response = anonymous.request(method, path, headers=headers, follow_redirects=False)
            if response.status_code == 303:
                # A browser's own navigation (a link, or a form it posts): to the sign-in page.
                assert response.headers["location"].startswith("/login"), (method, path)
                assert headers is PAGE
            else:
                assert response.status_code == 401, (method, path, response.status_code)
            assert "csrf-token" not in response.text
        checked += 1
    assert checked >= 5


def test_every_change_refuses_a_missing_or_wrong_csrf_token(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """Every non-GET route answers 403 without the token, or with another one, even for an
    admin; the session goes on (a forged request must not sign anyone out)."""
    admin = signed_in("admin")
    other = csrf_of(signed_in("viewer"))
    changes = [(m, p) for m, p, _ in endpoints(webgui) if m not in ("GET", "HEAD")]
    assert ("POST", "/logout") in changes
    for method, path in changes:
        for headers, data in (
            ({}, {}),
            ({"x-csrf-token": other}, {}),
            ({"x-csrf-token": ""}, {"csrf_token": "forged"}),
            ({}, {"csrf_token": other}),
        ):
            response = admin.request(method, path, headers=headers, data=data)
            assert response.status_code == 403, (method, path, headers, data)
    assert admin.get("/", headers=PAGE, follow_redirects=False).status_code == 200


def test_sign_in_form_refuses_a_post_without_its_token(anonymous: httpx.Client) -> None:
    """A sign-in posted from another site (no token cookie, or no field) is refused."""
    data = {"name": "admin", "password": "correct horse battery staple"}
    assert anonymous.post("/login", data=data).status_code == 403
    anonymous.get("/login")  # sets the token cookie
    assert anonymous.post("/login", data={**data, "csrf_token": "x"}).status_code == 403


def test_each_route_enforces_its_declared_role(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """A role below the route's is refused with 403; the route's role and above get past it."""
    for method, path, rule in endpoints(webgui):
        if rule.role is None:
            continue
        for role in ROLES:
            client = signed_in(role.value)  # a fresh browser: a change may end its session
            token = csrf_of(client)
            response = client.request(
                method,
                path,
                headers={"x-csrf-token": token, **PAGE},
                follow_redirects=False,
            )
            if role.allows(rule.role):
                assert response.status_code not in (401, 403), (method, path, role)
            else:
                assert response.status_code == 403, (method, path, role)
                assert "needs the" in response.text


def test_a_route_without_an_access_rule_stops_the_app() -> None:
    """Forgetting requires()/public() on a new route is caught when the app is built."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/forgotten")
    def forgotten() -> str:
        return "patient data"

    with pytest.raises(RuntimeError, match="/forgotten must declare exactly one"):
        check_routes_declare_access(app)
