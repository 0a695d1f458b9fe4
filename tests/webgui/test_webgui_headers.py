"""Security headers on every answer: pages, fragments, errors, static files."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from webgui_harness import WebGui, assert_inert

from mercure.webgui.asgi import CONTENT_SECURITY_POLICY
from mercure.webgui.auth import app_routes

EXPECTED = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def get_routes(webgui: WebGui) -> Iterator[str]:
    """Every GET route's path (placeholders filled)."""
    for info in app_routes(webgui.app):
        if "GET" in info.methods:
            yield re.sub(r"\{[^}]+\}", "x", info.path)


def check_headers(response: httpx.Response, cache: str = "no-store") -> None:
    """The security headers are all there, with their values."""
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (response.url, name)
    assert response.headers["cache-control"] == cache, response.url
    assert "strict-transport-security" not in response.headers  # plain HTTP


def test_csp_forbids_inline_code_and_framing() -> None:
    """The policy: own scripts and styles only, no framing, forms to this site only."""
    for part in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ):
        assert part in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_every_page_and_fragment_has_the_headers(
    webgui: WebGui, admin: httpx.Client, anonymous: httpx.Client
) -> None:
    """Signed in (every GET route) and anonymous (refusals, the sign-in page, 404)."""
    webgui.beat_all()
    for path in get_routes(webgui):
        for client in (admin, anonymous):
            for headers in ({"accept": "text/html"}, {"hx-request": "true"}):
                response = client.get(path, headers=headers, follow_redirects=False)
                check_headers(response)
    check_headers(anonymous.get("/no/such/page", headers={"accept": "text/html"}))
    check_headers(anonymous.post("/login", data={}))


def test_pages_have_no_inline_script_or_style(
    webgui: WebGui, admin: httpx.Client, anonymous: httpx.Client
) -> None:
    """What the CSP would block is not there to begin with (the browser test checks too)."""
    webgui.beat_all()
    assert_inert(anonymous.get("/login").text)
    for path in get_routes(webgui):
        response = admin.get(path, headers={"accept": "text/html"})
        if response.headers.get("content-type", "").startswith("text/html"):
            assert_inert(response.text)


@pytest.mark.parametrize(
    "path", ["/static/app.js", "/static/app.css", "/static/vendor/htmx.min.js"]
)
def test_static_files_are_revalidated_not_stored_blindly(
    anonymous: httpx.Client, path: str
) -> None:
    """Static files are served to anyone, with the headers, and revalidated after upgrades."""
    response = anonymous.get(path)
    assert response.status_code == 200
    check_headers(response, cache="no-cache")


def test_no_api_documentation_is_served(anonymous: httpx.Client) -> None:
    """FastAPI's /docs, /redoc (CDN scripts) and the schema are off."""
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert anonymous.get(path).status_code == 404
