"""Sessions: cookie flags, idle and absolute timeouts, sign-out, and users changed at the
bookkeeper. Time moves by the fake clock, never by sleeping."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from webgui_harness import WebGui, csrf_of

from mercure.webgui.sessions import COOKIE_NAME, RECHECK_INTERVAL

PAGE = {"accept": "text/html"}
POLL = {"hx-request": "true", "x-mercure-poll": "1"}


def is_signed_in(client: httpx.Client) -> bool:
    """Whether the overview answers with a page (not a redirect to the sign-in page)."""
    response = client.get("/", headers=PAGE, follow_redirects=False)
    assert response.status_code in (200, 303)
    return response.status_code == 200


def test_session_cookie_is_httponly_strict_and_has_no_lifetime(webgui: WebGui) -> None:
    """The cookie holds a signed id only; the browser cannot read it or send it cross-site."""
    from webgui_harness import sign_in

    with webgui.client() as client:
        response = sign_in(client, "viewer")
    cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith(COOKIE_NAME)
    )
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/" in flags
    assert not any(flag.startswith(("max-age", "expires")) for flag in flags)
    assert "secure" not in flags  # plain HTTP here; test_service checks HTTPS
    assert "viewer" not in cookie


def test_idle_session_ends(webgui: WebGui, viewer: httpx.Client) -> None:
    """A session unused for the idle timeout is gone; use before it keeps it alive."""
    idle = webgui.context.settings.idle_timeout
    webgui.clock.advance(idle - 5)
    assert is_signed_in(viewer)
    webgui.clock.advance(idle - 5)
    assert is_signed_in(viewer)
    webgui.clock.advance(idle)
    assert not is_signed_in(viewer)


def test_automatic_refresh_does_not_keep_a_session_alive(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """Polling fragments (X-Mercure-Poll) are served but do not count as use."""
    idle = webgui.context.settings.idle_timeout
    for _ in range(int(idle // 60) + 1):
        webgui.clock.advance(60)
        response = viewer.get("/overview/services", headers=POLL)
        if response.status_code == 401:
            break
        assert response.status_code == 200
    else:
        raise AssertionError("polling kept the session alive past its idle timeout")
    assert response.headers["hx-redirect"] == "/login"
    assert not is_signed_in(viewer)


def test_session_ends_at_its_absolute_age_however_busy(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """Used every few minutes, a session still ends max_age after sign-in."""
    max_age = webgui.context.settings.max_age
    elapsed = 0.0
    while elapsed + 600 < max_age:
        webgui.clock.advance(600)
        elapsed += 600
        assert is_signed_in(viewer), f"ended early, after {elapsed} s"
    webgui.clock.advance(max_age - elapsed)
    assert not is_signed_in(viewer)


def test_sign_out_ends_the_session_on_the_server(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """After sign-out the old cookie, replayed, is refused: the session is gone here."""
    viewer = signed_in("viewer")
    cookie = viewer.cookies[COOKIE_NAME]
    token = csrf_of(viewer)
    response = viewer.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    with webgui.client() as replay:
        replay.cookies.set(COOKIE_NAME, cookie)
        assert not is_signed_in(replay)
        assert replay.get("/overview/services", headers=POLL).status_code == 401
    assert len(webgui.context.sessions) == 0
    [event] = [e for e in webgui.written_events() if e.kind == "audit.logout"]
    assert event.data["user"] == "viewer"
    assert event.data["remote_address"] == "127.0.0.1"


def test_forged_or_altered_cookie_is_refused(webgui: WebGui, viewer: httpx.Client) -> None:
    """A cookie with a wrong signature, or another id under a copied signature, is nothing."""
    value, signature = viewer.cookies[COOKIE_NAME].split(".")
    for forged in (f"{value}x.{signature}", f"{value}.{signature[:-2]}AA", value, "x.y"):
        with webgui.client() as client:
            client.cookies.set(COOKIE_NAME, forged)
            assert not is_signed_in(client)


def test_changed_user_ends_its_sessions_within_the_recheck_interval(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """A new password, another role (session_epoch moves), disabling or removing the user
    ends its sessions at the next re-check; until then nothing is asked."""
    for n, change in enumerate(("password", "role", "disabled", "removed")):
        name = f"carol{n}"
        webgui.add_user(name, "operator")
        carol = signed_in(name)
        who = {"actor": "admin", "remote_address": None}
        if change == "password":
            webgui.users.set_password(name, "another long password", **who)
        elif change == "role":
            webgui.users.set_role(name, "viewer", **who)
        elif change == "disabled":
            webgui.users.set_disabled(name, True, **who)
        else:
            webgui.users.remove(name, **who)
        webgui.clock.advance(RECHECK_INTERVAL - 1)
        assert is_signed_in(carol), change
        webgui.clock.advance(2)
        response = carol.get("/", headers=PAGE, follow_redirects=False)
        assert response.status_code == 303, change
        assert "ended=1" in response.headers["location"]


def test_session_goes_on_while_the_bookkeeper_is_down_and_says_so(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """The user cannot be re-checked: the session stays (it was valid), the page warns."""
    webgui.beat_all()
    webgui.bookkeeper_down = True
    webgui.clock.advance(RECHECK_INTERVAL + 1)
    page = viewer.get("/", headers=PAGE)
    assert page.status_code == 200
    assert "Bookkeeper unreachable" in page.text
    assert "Services" in page.text  # what the data folder says is still shown
    webgui.bookkeeper_down = False
    webgui.clock.advance(RECHECK_INTERVAL + 1)
    assert "Bookkeeper unreachable" not in viewer.get("/", headers=PAGE).text


def test_ended_session_says_so_on_the_sign_in_page(webgui: WebGui, viewer: httpx.Client) -> None:
    """A browser whose session timed out is told why it is at the sign-in page."""
    webgui.clock.advance(webgui.context.settings.idle_timeout + 1)
    response = viewer.get("/", headers=PAGE, follow_redirects=False)
    assert response.headers["location"] == "/login?next=/&ended=1"
    assert "Your session ended" in viewer.get(response.headers["location"]).text


def test_sign_out_after_the_session_ended_leads_to_the_sign_in_page(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """Clicking "Sign out" on a page left open too long is not an error page."""
    token = csrf_of(viewer)
    webgui.clock.advance(webgui.context.settings.idle_timeout + 1)
    response = viewer.post(
        "/logout", data={"csrf_token": token}, headers=PAGE, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login?ended=1"


def test_reloaded_timeouts_apply_to_running_sessions(webgui: WebGui, viewer: httpx.Client) -> None:
    """A configuration reload with a shorter idle timeout ends idle sessions sooner."""
    webgui_config = webgui.config.webgui.model_copy(update={"session_idle_timeout": 60.0})
    webgui.context.apply(webgui.config.model_copy(update={"webgui": webgui_config}))
    webgui.clock.advance(61)
    assert not is_signed_in(viewer)
