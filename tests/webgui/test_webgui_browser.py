"""The web interface in a real Chromium: sign-in, the overview and its live refresh, no
script injection or CSP violation anywhere, sign-out (in-process app on a real bookkeeper
application; test_webgui_browser_system.py runs against `mercure run`)."""

from __future__ import annotations

from typing import Any

import pytest
from browser import chromium
from test_webgui_xss import hostile_events
from webgui_harness import PASSWORD, XSS_PAYLOADS, WebGui

from mercure.core.datafolder import Stage


def watch(page: Any, problems: list[str]) -> None:
    """Record dialogs (injected scripts would open them), CSP violations and script errors."""

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning")
            else None
        ),
    )


def sign_in(page: Any, base: str, name: str) -> None:
    """Fill and send the sign-in form."""
    page.goto(base + "/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


@pytest.mark.slow
def test_sign_in_overview_refresh_and_sign_out(webgui: WebGui) -> None:
    """The whole round in a browser, with hostile text on the page: nothing runs, the
    overview refreshes itself, sign-out ends the session."""
    webgui.beat_all(detail=XSS_PAYLOADS[0])
    webgui.store_events(hostile_events())
    webgui.data.pause(Stage.OUTGOING, f"test {XSS_PAYLOADS[1]}")
    base = webgui.start()
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page()  # type: ignore[attr-defined]
        watch(page, problems)
        sign_in(page, base, "admin")
        assert page.locator(".summary").is_visible()
        assert "All 7 services running" in page.inner_text(".summary")
        page.wait_for_selector("#throughput-chart canvas", timeout=10000)
        with page.expect_response(lambda r: "/overview/services" in r.url, timeout=15000):
            pass  # the 5-second refresh happens by itself
        assert "All 7 services running" in page.inner_text(".summary")
        # Every same-origin link, with the injected markup on the page: no dialog, no error.
        links = page.eval_on_selector_all("a[href^='/']", "els => els.map(e => e.href)")
        for link in sorted(set(links)):
            page.goto(link)
        page.goto(base + "/")
        page.click("button.signout")
        page.wait_for_url(base + "/login")
        page.goto(base + "/")
        assert page.url.startswith(base + "/login")
    assert problems == []


@pytest.mark.slow
def test_viewer_sees_no_admin_menu(webgui: WebGui) -> None:
    """The menu shows what the role may open (admin pages only to admins)."""
    base = webgui.start()
    with chromium() as browser:
        page = browser.new_page()  # type: ignore[attr-defined]
        sign_in(page, base, "viewer")
        menu = page.inner_text("header nav")
        assert "Overview" in menu
        assert "Users" not in menu and "Audit" not in menu
