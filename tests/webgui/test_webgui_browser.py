"""The web interface in a real Chromium: sign-in, the overview and its live refresh, no
script injection or CSP violation anywhere, sign-out (in-process app on a real bookkeeper
application; test_webgui_browser_system.py runs against `mercure run`)."""

from __future__ import annotations

from typing import Any

import pytest
from browser import chromium, screenshot_folder
from test_webgui_search import series_events
from test_webgui_xss import plant_everywhere
from webgui_harness import PASSWORD, XSS_PAYLOADS, WebGui

from mercure.core.datafolder import Stage
from mercure.core.installed import installed_services


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
    """The whole round in a browser, with hostile text in every source and every page
    visited: nothing runs, the overview refreshes itself, sign-out ends the session."""
    plant_everywhere(webgui)
    webgui.data.pause(Stage.OUTGOING, f"test {XSS_PAYLOADS[1]}")
    base = webgui.start()
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page()  # type: ignore[attr-defined]
        watch(page, problems)
        sign_in(page, base, "admin")
        assert page.locator(".summary").is_visible()
        assert f"All {len(installed_services())} services running" in page.inner_text(".summary")
        page.wait_for_selector("#throughput-chart canvas", timeout=10000)
        with page.expect_response(lambda r: "/overview/services" in r.url, timeout=15000):
            pass  # the 5-second refresh happens by itself
        assert f"All {len(installed_services())} services running" in page.inner_text(".summary")
        # Every page a link leads to, from page to page, with the injected markup on each:
        # no dialog, no script error, no CSP violation.
        seen: set[str] = set()
        queue = [base + "/"]
        while queue:
            link = queue.pop(0)
            if link in seen or "/logout" in link:
                continue
            seen.add(link)
            page.goto(link)
            found = page.eval_on_selector_all("a[href^='/']", "els => els.map(e => e.href)")
            queue += [address for address in found if address not in seen]
        assert len(seen) > 30
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


@pytest.mark.slow
def test_search_by_accession_and_read_the_series_history(webgui: WebGui, tmp_path: Any) -> None:
    """Type an accession number, find the series, open its history: the failed delivery's
    reason is there; then the same study in the studies view."""
    events = []
    for n, (name, accession, study, modality) in enumerate(
        [
            ("Doe^John", "ACC1001", "9.1", "CT"),
            ("Doe^John", "ACC1001", "9.1", "SR"),
            ("Roe^Richard", "ACC1002", "9.2", "MR"),
            ("Moe^Mary", "ACC1003", "9.3", "CT"),
        ]
    ):
        events += series_events(
            n, name=name, accession=accession, study=study, modality=modality, failed=n == 1
        )
    webgui.store_events(events)
    base = webgui.start()
    folder = screenshot_folder(tmp_path)
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
        watch(page, problems)
        sign_in(page, base, "viewer")
        page.click("nav >> text=Search")
        page.fill("input[name=accession]", "ACC1001")
        page.click("form.search-form button[type=submit]")
        page.wait_for_url(lambda url: "accession=ACC1001" in url)
        results = page.locator("table.results tbody tr")
        assert results.count() == 2
        assert "DOE, JOHN" in page.inner_text("table.results").upper()
        page.screenshot(path=str(folder / "webgui-search.png"))
        page.click("table.results >> text=series 1")
        page.wait_for_url("**/search/series/1.2.3.1")
        assert "association rejected" in page.inner_text("body")
        assert "dispatch.failed" in page.inner_text("body")
        page.screenshot(path=str(folder / "webgui-series.png"), full_page=True)
        page.goto(base + "/search")
        page.check("input[name=kind][value=studies]")
        page.fill("input[name=patient_name]", "doe")
        page.click("form.search-form button[type=submit]")
        assert page.locator("table.results tbody tr").count() == 1
        assert "CT, SR" in page.inner_text("table.results")
    assert problems == []
