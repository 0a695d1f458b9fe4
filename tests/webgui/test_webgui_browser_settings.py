"""The settings pages in a real Chromium: an admin changes the router's series_complete_trigger
and a listener's allowed AE titles through the forms; the file has them, with its comments.
No CSP violation or script error. The screenshot is docs/images/webgui-settings.png (written
there with MERCURE_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from browser import chromium, screenshot_folder
from test_webgui_browser import sign_in, watch
from webgui_harness import WebGui

VIEWPORT = {"width": 1360, "height": 900}
HAND_WRITTEN = """\
# mercure-router of the radiology department; ask the PACS team before changing listeners.
data_dir: {data_dir}
appliance_name: radiology-1

router:
  # The old CT sends slowly: give a series a little longer to complete.
  series_complete_trigger: 90   # seconds

receiver:
  listeners:
    - name: modalities       # the port every modality knows
      port: 11112
      aet: MERCURE
      allowed_calling_aets:
        - CT_ROOM1
    - name: pacs
      port: 11113
      aet: MERCURE_PACS
"""


@pytest.mark.slow
def test_admin_changes_router_and_listener_settings_in_the_browser(
    webgui: WebGui, tmp_path: Path
) -> None:
    """Two saves through the forms; the file holds the new values and every comment."""
    text = HAND_WRITTEN.format(data_dir=webgui.config.data_dir)
    webgui.config_path.write_text(text)
    base = webgui.start()
    problems: list[str] = []
    images = screenshot_folder(tmp_path)
    with chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
        page = context.new_page()
        watch(page, problems)
        sign_in(page, base, "admin")
        page.click("nav[aria-label=Main] >> text=Settings")
        page.wait_for_url(base + "/settings")
        page.click("nav.settings-menu >> text=Router")
        page.wait_for_url(base + "/settings/router")
        trigger = page.locator('[name="series_complete_trigger"]')
        assert trigger.input_value() == "90"
        trigger.fill("3m")
        page.locator("button[type=submit]", has_text="Save Router").first.click()
        page.wait_for_selector(".flash.good")
        assert "router.series_complete_trigger: 90 -> " in page.inner_text(".flash.good")

        page.click("nav.settings-menu >> text=Receiver")
        page.wait_for_url(base + "/settings/receiver")
        aets = page.locator('[name="listeners[0].allowed_calling_aets"]')
        assert aets.input_value() == "CT_ROOM1"
        aets.fill("CT_ROOM1\nMR_ROOM2\nUS_ER")
        page.locator("button[type=submit]", has_text="Save Receiver").first.click()
        page.wait_for_selector(".flash.good")
        assert page.locator('[name="listeners[0].allowed_calling_aets"]').input_value() == (
            "CT_ROOM1\nMR_ROOM2\nUS_ER"
        )
        page.screenshot(path=str(images / "webgui-settings.png"))
        context.close()
    assert problems == []
    saved = webgui.config_path.read_text()
    document = yaml.safe_load(saved)
    assert document["router"]["series_complete_trigger"] == "3m"
    assert document["receiver"]["listeners"][0]["allowed_calling_aets"] == [
        "CT_ROOM1",
        "MR_ROOM2",
        "US_ER",
    ]
    assert document["receiver"]["listeners"][1] == {
        "name": "pacs",
        "port": 11113,
        "aet": "MERCURE_PACS",
    }
    for line in text.splitlines():
        if "#" in line:
            assert line.split("#", 1)[1] in saved, line
    assert "fsync" not in saved and "idle_timeout" not in saved  # no defaults written
