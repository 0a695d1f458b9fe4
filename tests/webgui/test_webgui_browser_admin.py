"""The logs, audit and users pages in a real Chromium (in-process app on a real bookkeeper
application): an admin adds a user who signs in, disables them and their session ends on
their next click; removal through its confirmation page; the live tail of the logs page.
No CSP violation or script error anywhere. The screenshots are docs/images/webgui-logs.png,
webgui-audit.png and webgui-users.png (written there with MERCURE_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, screenshot_folder
from test_webgui_browser import sign_in, watch
from test_webgui_logs import record, write_log
from webgui_harness import XSS_PAYLOADS, WebGui

from mercure.core.clock import utcnow
from mercure.core.events import Event

NEW_PASSWORD = "night shift passphrase 42"
VIEWPORT = {"width": 1360, "height": 860}
MAX_SCREENSHOT = 300_000


def new_page(browser: Any, problems: list[str]) -> Any:
    """A page in a browser context of its own (own cookies), watched for problems."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    watch(page, problems)
    return page


def router_log() -> str:
    """A plausible stretch of a router's log: routine lines, a slow peer, a failure."""
    lines = []
    for n in range(40):
        minute = f"{n // 6:02d}"
        second = f"{(n * 10) % 60:02d}"
        stamp = f"2026-12-04 03:{minute}:{second}.{n:03d}"
        series = f"1.2.826.0.1.3680043.10.{5000 + n}"
        lines.append(
            f"{stamp} INFO    router mercure.router.router: routed series {series} "
            f"by rule ct-to-pacs to outgoing [series_uid={series}]\n"
        )
        if n == 17:
            lines.append(
                f"{stamp} WARNING router mercure.router.journal: series {series} still receiving "
                "after 300 s; waiting for it to go quiet\n"
            )
        if n == 31:
            lines.append(
                f"{stamp} ERROR   router mercure.router.router: cannot route series {series}: "
                "tags.json unreadable; moved to error/\n"
                "Traceback (most recent call last):\n"
                '  File "router.py", line 251, in _route\n'
                "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
            )
    return "".join(lines)


@pytest.mark.slow
def test_admin_adds_a_user_who_is_signed_out_when_disabled(webgui: WebGui, tmp_path: Path) -> None:
    """Add through the form, the new user signs in, the admin disables them: their next
    click ends at the sign-in page; then removal through the confirmation page."""
    earlier = utcnow() - timedelta(minutes=20)
    webgui.store_events(
        [
            Event(
                time=earlier,
                service="bookkeeper",
                kind="audit.login_failed",
                severity="warning",
                message="sign-in refused",
                data={
                    "user": "nightshift",
                    "object": "nightshift",
                    "remote_address": "10.20.30.99",
                },
            ),
            Event(
                time=earlier + timedelta(minutes=2),
                service="webgui",
                kind="audit.queue.pause",
                message="paused outgoing",
                data={
                    "user": "operator",
                    "object": "outgoing",
                    "remote_address": "10.20.30.41",
                    "reason": "PACS maintenance until 06:00",
                },
            ),
        ]
    )
    base = webgui.start()
    images = screenshot_folder(tmp_path)
    problems: list[str] = []
    with chromium() as browser:
        admin = new_page(browser, problems)
        sign_in(admin, base, "admin")
        admin.click("header nav >> text=Users")
        admin.wait_for_url(base + "/users")
        admin.fill("input[name=name]", "nightshift")
        admin.select_option("select[name=role]", "operator")
        admin.fill("input[name=password]", NEW_PASSWORD)
        admin.fill("input[name=password_again]", NEW_PASSWORD)
        admin.click("button:has-text('Add user')")
        admin.wait_for_selector("text=nightshift was added")
        assert "operator" in admin.inner_text("tr:has-text('nightshift')")

        worker = new_page(browser, problems)
        worker.goto(base + "/")
        worker.fill("input[name=name]", "nightshift")
        worker.fill("input[name=password]", NEW_PASSWORD)
        worker.click("button[type=submit]")
        worker.wait_for_url(base + "/")
        assert "nightshift" in worker.inner_text("header .who")

        admin.goto(base + "/users")
        admin.click("tr:has-text('nightshift') >> text=Manage")
        admin.wait_for_url(base + "/users/nightshift")
        admin.click("button:has-text('Disable nightshift')")
        admin.wait_for_selector("text=nightshift was disabled")

        worker.click("header nav >> text=Logs")
        worker.wait_for_url(base + "/login**")
        assert "Your session ended" in worker.inner_text("main")

        admin.click("text=All users")
        assert "disabled" in admin.inner_text("tr:has-text('nightshift')")
        admin.screenshot(path=str(images / "webgui-users.png"), full_page=True)
        admin.click("tr:has-text('nightshift') >> text=Manage")

        admin.click("text=Remove nightshift")
        admin.wait_for_url(base + "/users/nightshift/remove")
        assert "Remove user nightshift?" in admin.inner_text("main")
        admin.click("text=Cancel")
        admin.wait_for_url(base + "/users/nightshift")
        admin.click("text=Remove nightshift")
        admin.click("button:has-text('Yes, remove nightshift')")
        admin.wait_for_selector("text=nightshift was removed.")
        assert "nightshift" not in admin.inner_text("table.users")

        admin.click("header nav >> text=Audit")
        admin.wait_for_url(base + "/audit")
        audit = admin.inner_text("table.audit")
        for action in ("user.create", "login", "user.disable", "user.remove"):
            assert action in audit, action
        admin.screenshot(path=str(images / "webgui-audit.png"), full_page=True)
    assert problems == []
    for name in ("webgui-users.png", "webgui-audit.png"):
        assert (images / name).stat().st_size < MAX_SCREENSHOT


@pytest.mark.slow
def test_logs_page_tails_live_and_keeps_hostile_lines_inert(webgui: WebGui, tmp_path: Path) -> None:
    """A viewer reads the router's log; lines written meanwhile appear by themselves, markup
    in them does nothing; switching the level filter works without scripts of its own."""
    write_log(webgui, router_log())
    write_log(webgui, record("INFO", "dispatcher started", "dispatcher"), "dispatcher")
    base = webgui.start()
    images = screenshot_folder(tmp_path)
    problems: list[str] = []
    with chromium() as browser:
        page = new_page(browser, problems)
        sign_in(page, base, "viewer")
        page.click("header nav >> text=Logs")
        page.wait_for_url(base + "/logs")
        assert "routed series" in page.inner_text("#log-lines")
        write_log(
            webgui,
            "2026-12-04 03:06:41.207 WARNING router mercure.router.router: target PACS-MAIN "
            "refused the association (rejected permanent); series queued for retry in 60 s\n",
        )
        page.wait_for_selector("text=target PACS-MAIN refused the association", timeout=15000)
        at_bottom = "e => e.scrollHeight - e.scrollTop - e.clientHeight < 40"
        page.wait_for_function(f"({at_bottom})(document.getElementById('log-lines'))")
        page.screenshot(path=str(images / "webgui-logs.png"))
        write_log(webgui, record("INFO", f"peer AE {XSS_PAYLOADS[0]} {XSS_PAYLOADS[1]}"))
        page.wait_for_selector("#log-lines >> text=peer AE", timeout=15000)
        assert XSS_PAYLOADS[0] in page.inner_text("#log-lines")  # shown as text
        page.select_option("select[name=level]", "error")
        page.click("button:has-text('Show')")
        page.wait_for_url("**level=error**")
        shown = page.inner_text("#log-lines")
        assert "cannot route series" in shown and "JSONDecodeError" in shown
        assert "routed series" not in shown
        page.click(".log-services >> text=cleaner")
        assert "journalctl -u mercure@cleaner" in page.inner_text("main")
    assert problems == []
    assert (images / "webgui-logs.png").stat().st_size < MAX_SCREENSHOT
