"""Behind a reverse proxy: root_path, and client address and scheme from trusted proxies only;
and the audit helper's record of who did what from where."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import Request
from webgui_harness import PASSWORD, WebGui

from mercure.webgui.audit import audit
from mercure.webgui.settings import WebSettings


@pytest.fixture
def proxied(tmp_path: Path) -> WebGui:
    """The interface under /mercure, trusting a proxy on 127.0.0.0/8."""
    gui = WebGui(tmp_path, webgui={"root_path": "/mercure", "trusted_proxies": ["127.0.0.0/8"]})
    gui.add_user("viewer", "viewer")
    yield gui  # type: ignore[misc]
    gui.close()


def sign_in_under(client: httpx.Client, prefix: str, headers: dict[str, str]) -> httpx.Response:
    import re

    page = client.get(f"{prefix}/login", headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    return client.post(
        f"{prefix}/login",
        data={"name": "viewer", "password": PASSWORD, "csrf_token": token.group(1)},
        headers=headers,
        follow_redirects=False,
    )


def test_root_path_prefixes_links_and_cookies(proxied: WebGui) -> None:
    """Pages link under /mercure, cookies are scoped to it, and both proxy styles (prefix
    kept or stripped) reach the same pages."""
    with proxied.client() as client:
        page = client.get("/mercure/login")
        assert 'action="/mercure/login"' in page.text
        assert 'href="/mercure/static/app.css"' in page.text
        assert "Path=/mercure" in page.headers["set-cookie"]
        response = sign_in_under(client, "/mercure", {})
        assert response.headers["location"] == "/mercure/"
        assert "Path=/mercure" in response.headers["set-cookie"]
        overview = client.get("/mercure/", headers={"accept": "text/html"})
        assert overview.status_code == 200
        assert 'hx-get="/mercure/overview/services"' in overview.text
        # A proxy that strips the prefix: the browser's cookie (Path=/mercure) still arrives.
        cookie = f"mercure_session={client.cookies['mercure_session']}"
        with httpx.Client(base_url=proxied.url) as proxy:
            stripped = proxy.get(
                "/overview/services", headers={"hx-request": "true", "cookie": cookie}
            )
        assert stripped.status_code == 200
        assert "Services" in stripped.text
        bare = client.get("/mercure", follow_redirects=False)
        assert bare.status_code == 308 and bare.headers["location"] == "/mercure/"


def test_https_at_the_proxy_makes_cookies_secure_and_sends_hsts(proxied: WebGui) -> None:
    """X-Forwarded-Proto: https from the trusted proxy: Secure cookies, HSTS."""
    import re

    headers = {"x-forwarded-proto": "https", "x-forwarded-for": "10.1.2.3"}
    with httpx.Client(base_url=proxied.start()) as client:
        page = client.get("/mercure/login", headers=headers)
        assert "Secure" in page.headers["set-cookie"]
        assert page.headers["strict-transport-security"].startswith("max-age=")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        login_cookie = page.headers["set-cookie"].split(";")[0]
        response = client.post(
            "/mercure/login",
            data={"name": "viewer", "password": PASSWORD, "csrf_token": token.group(1)},
            headers={**headers, "cookie": login_cookie},
            follow_redirects=False,
        )
        assert response.status_code == 303
        session_cookie = next(
            value
            for name, value in response.headers.multi_items()
            if name == "set-cookie" and value.startswith("mercure_session=")
        )
        assert "Secure" in session_cookie


def test_forwarded_address_is_believed_from_trusted_proxies_only() -> None:
    """The right-most untrusted hop is the client; a client's own X-Forwarded-For is not."""
    settings = WebSettings()
    assert not settings.is_trusted_proxy("127.0.0.1")  # nothing is trusted by default
    settings.trusted_proxies = (__import__("ipaddress").ip_network("10.0.0.0/8"),)
    assert settings.is_trusted_proxy("10.9.9.9")
    assert not settings.is_trusted_proxy("192.168.1.1")
    assert not settings.is_trusted_proxy("not an address")


def test_audit_records_user_action_object_and_forwarded_address(proxied: WebGui) -> None:
    """audit() writes audit.<action> with the user, the object and the client address."""
    headers = {"x-forwarded-for": "203.0.113.9, 127.0.0.1"}
    with proxied.client() as client:
        sign_in_under(client, "/mercure", headers)
        token = client.get("/mercure/", headers={"accept": "text/html"}).text
        import re

        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', token)
        assert csrf is not None
        client.post("/mercure/logout", data={"csrf_token": csrf.group(1)}, headers=headers)
    [event] = [e for e in proxied.written_events() if e.kind == "audit.logout"]
    assert event.data == {"user": "viewer", "object": "viewer", "remote_address": "203.0.113.9"}


def test_untrusted_forwarded_for_is_ignored(tmp_path: Path) -> None:
    """Without trusted_proxies, a client claiming another address is recorded as itself."""
    gui = WebGui(tmp_path)
    gui.add_user("viewer", "viewer")
    try:
        with gui.client() as client:
            sign_in_under(client, "", {"x-forwarded-for": "203.0.113.9"})
            assert [s.remote_address for s in gui.context.sessions._sessions.values()] == [
                "127.0.0.1"
            ]
    finally:
        gui.close()


def test_audit_refuses_a_malformed_action() -> None:
    """Actions are dotted lower-case words (they become event kinds)."""
    request = Request({"type": "http", "headers": [], "app": None})
    with pytest.raises(ValueError, match="dotted lower-case"):
        audit(request, "Queue Pause")
