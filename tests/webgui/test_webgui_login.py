"""The sign-in page: throttling, the first user, an unreachable bookkeeper, where it leads."""

from __future__ import annotations

import re

import httpx
from webgui_harness import PASSWORD, WebGui, sign_in

from mercure.webgui.throttle import LoginThrottle

PAGE = {"accept": "text/html"}


def test_right_password_signs_in_and_goes_where_asked(webgui: WebGui) -> None:
    """After signing in, the browser goes on to the page it first asked for."""
    with webgui.client() as client:
        first = client.get("/overview/chart.json", headers=PAGE, follow_redirects=False)
        assert first.headers["location"] == "/login?next=/overview/chart.json"
        page = client.get(first.headers["location"])
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        assert 'name="next" value="/overview/chart.json"' in page.text
        response = client.post(
            "/login",
            data={
                "name": "viewer",
                "password": PASSWORD,
                "csrf_token": token.group(1),
                "next": "/overview/chart.json",
            },
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/overview/chart.json"


def test_sign_in_never_leads_to_another_site(webgui: WebGui) -> None:
    """``next`` pointing elsewhere (another host, a scheme, backslashes) goes to the overview."""
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        with webgui.client() as client:
            page = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            response = client.post(
                "/login",
                data={
                    "name": "viewer",
                    "password": PASSWORD,
                    "csrf_token": token.group(1),
                    "next": target,
                },
                follow_redirects=False,
            )
            assert response.headers["location"] == "/", target


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(
    webgui: WebGui, anonymous: httpx.Client
) -> None:
    """Unknown user and wrong password get the same answer."""
    unknown = sign_in(anonymous, "nobody", PASSWORD)
    wrong = sign_in(anonymous, "viewer", "wrong")
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong user name or password" in unknown.text
    assert "Wrong user name or password" in wrong.text


def test_repeated_failures_for_a_user_are_throttled(webgui: WebGui) -> None:
    """After five failures the user name must wait (429), even with the right password
    and from another address; the wait doubles with each further failure, then passes."""
    throttle = webgui.context.throttle
    with webgui.client() as client:
        for _ in range(throttle.free_attempts):
            assert sign_in(client, "viewer", "wrong").status_code == 401
        refused = sign_in(client, "viewer", PASSWORD)
        assert refused.status_code == 429
        assert "Too many failed sign-ins" in refused.text
        assert "Try again in 15 seconds" in refused.text
        webgui.clock.advance(throttle.base_delay + 1)
        assert sign_in(client, "viewer", "wrong").status_code == 401
        webgui.clock.advance(throttle.base_delay + 1)
        assert sign_in(client, "viewer", PASSWORD).status_code == 429  # doubled: 30 s
        webgui.clock.advance(throttle.base_delay)
        assert sign_in(client, "viewer", PASSWORD).status_code == 303
    audited = [e for e in webgui.written_events() if e.kind == "audit.login.throttled"]
    assert audited and audited[0].data["user"] == "viewer"


def test_throttle_counts_per_address_across_user_names() -> None:
    """Guessing many user names from one address is slowed like one user; another address
    and another user are not affected; success clears the user, not the address."""
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for n in range(5):
        throttle.failed(f"user{n}", "10.0.0.1")
    assert throttle.wait_time("someone", "10.0.0.1") > 0
    assert throttle.wait_time("someone", "10.0.0.2") == 0
    throttle.succeeded("user1")
    assert throttle.wait_time("user1", "10.0.0.1") > 0
    now[0] += throttle.forget_after
    assert throttle.wait_time("someone", "10.0.0.1") == 0


def test_throttle_table_is_bounded() -> None:
    """A flood of user names cannot grow the table past its bound."""
    throttle = LoginThrottle(max_entries=100)
    for n in range(1000):
        throttle.failed(f"user{n}", f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._entries) <= 100


def test_first_start_says_how_to_create_the_first_user(tmp_path: object) -> None:
    """With no user at all the sign-in page gives the exact command, with the config file."""
    from pathlib import Path

    gui = WebGui(Path(str(tmp_path)))
    try:
        with gui.client() as client:
            page = client.get("/login").text
        config = gui.context.config_path
        assert "No user exists yet" in page
        assert f"mercure user add admin --role admin --config {config}" in page
        assert "There is no default password" in page
    finally:
        gui.close()


def test_sign_in_page_says_when_the_bookkeeper_is_unreachable(
    webgui: WebGui, anonymous: httpx.Client
) -> None:
    """No users can be checked: the page says so plainly, and a sign-in attempt gets 503."""
    webgui.bookkeeper_down = True
    page = anonymous.get("/login")
    assert page.status_code == 200
    assert "Sign-in is not possible right now" in page.text
    assert "does not answer" in page.text
    attempt = sign_in(anonymous, "viewer", PASSWORD)
    assert attempt.status_code == 503
    assert "Sign-in is not possible right now" in attempt.text
    assert webgui.context.throttle.wait_time("viewer", "127.0.0.1") == 0


def test_signed_in_user_visiting_the_sign_in_page_goes_to_the_overview(
    viewer: httpx.Client,
) -> None:
    """No second sign-in for a signed-in browser."""
    response = viewer.get("/login", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
