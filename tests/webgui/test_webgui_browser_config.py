"""The raw configuration page and its history in a real Chromium: an admin changes a value,
checks and saves it, looks at the history and the diff, restores the previous version; a second
admin who opened the page before gets "changed since you opened it" and keeps their text.
No CSP violation or script error, and the stored secret on no page. The screenshots are
docs/images/webgui-config.png, webgui-config-history.png and webgui-config-diff.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import chromium, screenshot_folder
from test_webgui_browser import sign_in
from test_webgui_browser_admin import MAX_SCREENSHOT, new_page
from test_webgui_config import HAND_EDITED, PASSWORD
from webgui_harness import WebGui

from mercure.core.config.history import list_changes, list_versions


@pytest.mark.slow
def test_admin_saves_views_the_diff_and_restores(webgui: WebGui, tmp_path: Path) -> None:
    original = HAND_EDITED.format(data_dir=webgui.config.data_dir, password=PASSWORD)
    webgui.config_path.write_text(original)
    webgui.add_user("nightadmin", "admin")
    base = webgui.start()
    images = screenshot_folder(tmp_path)
    problems: list[str] = []
    shown: list[str] = []
    with chromium() as browser:
        other = new_page(browser, problems)
        sign_in(other, base, "nightadmin")
        other.goto(base + "/config")  # opened before the first admin saves

        admin = new_page(browser, problems)
        sign_in(admin, base, "admin")
        admin.click("header nav >> text=Configuration")
        admin.wait_for_url(base + "/config")
        text = admin.input_value("textarea[name=text]")
        assert "password: <secret>" in text
        admin.fill("textarea[name=text]", text.replace("- pacs", "- pacs2"))
        admin.click("button:has-text('Check')")
        admin.wait_for_selector("#config-check >> text=unknown target 'pacs2'")
        admin.fill("textarea[name=text]", text.replace("90s", "120s"))
        admin.click("button:has-text('Check')")
        admin.wait_for_selector("#config-check >> text=No problems")
        admin.screenshot(path=str(images / "webgui-config.png"), full_page=True)
        shown.append(admin.content())
        admin.click("button:has-text('Save')")
        admin.wait_for_selector("text=Saved. router.series_complete_trigger")
        assert "series_complete_trigger: 120s   # CT01 is slow" in webgui.config_path.read_text()

        # The second admin opened the page before that save: theirs is refused, text kept.
        # (After the restore below the file is byte for byte what they opened: it would pass.)
        mine = other.input_value("textarea[name=text]") + "# checked by the night admin\n"
        other.fill("textarea[name=text]", mine)
        other.click("button:has-text('Save')")
        other.wait_for_selector("text=changed since you opened it")
        assert "# checked by the night admin" in other.input_value("textarea[name=text]")
        shown.append(other.content())

        admin.click("text=History (1 earlier version)")
        admin.wait_for_url(base + "/config/history")
        first_row = admin.inner_text("table.history tbody tr >> nth=0")
        assert "admin" in first_row and "edited the whole file" in first_row
        assert "edited outside the web interface" in admin.inner_text(
            "table.history tbody tr >> nth=1"
        )
        admin.screenshot(path=str(images / "webgui-config-history.png"), full_page=True)
        admin.click("table.history tbody tr >> nth=0 >> text=Diff with previous")
        admin.wait_for_selector("#diff")
        assert "-    series_complete_trigger: 90s" in admin.inner_text("pre.diff .diff-del")
        assert "+    series_complete_trigger: 120s" in admin.inner_text("pre.diff .diff-add")
        admin.screenshot(path=str(images / "webgui-config-diff.png"), full_page=True)
        shown.append(admin.content())

        admin.click("table.history tbody tr >> nth=1 >> button:has-text('Restore')")
        admin.wait_for_selector("text=Restored the version")
        assert webgui.config_path.read_text() == original
        assert "restored" in admin.inner_text("table.history tbody tr >> nth=0")
        shown.append(admin.content())

    assert webgui.config_path.read_text() == original
    assert [r.user for r in list_changes(webgui.config_path)] == ["admin", "admin"]
    assert len(list_versions(webgui.config_path)) == 2
    assert all(PASSWORD not in page for page in shown)
    # The refused save answers 409 on purpose; Chromium logs every 4xx document as an error.
    expected = "Failed to load resource: the server responded with a status of 409 (Conflict)"
    assert [p for p in problems if expected not in p] == []
    for name in ("webgui-config.png", "webgui-config-history.png", "webgui-config-diff.png"):
        assert (images / name).stat().st_size < MAX_SCREENSHOT
