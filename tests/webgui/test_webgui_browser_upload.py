"""The Upload page in a real Chromium against a real receiver with STOW-RS on: an operator
picks three DICOM files, uploads them, sees each stored, and the receiver has them in
incoming/. No CSP violation or script error. The screenshot is docs/images/webgui-upload.png
(written there with MERCURE_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import chromium, screenshot_folder
from test_webgui_browser import sign_in, watch
from webgui_harness import WebGui

from mercure.testing.series import generate_series
from mercure.testing.stow import start_stow_receiver, stow_receiver_config

VIEWPORT = {"width": 1360, "height": 800}
UPLOAD_TOKEN = "webgui-upload-token-0123456789"


@pytest.mark.slow
def test_operator_uploads_three_files_in_the_browser(tmp_path: Path) -> None:
    """Three files chosen, uploaded, each shown stored; all three in incoming/<series>/."""
    config = stow_receiver_config(tmp_path / "data", senders={"webgui": UPLOAD_TOKEN})
    receiver = start_stow_receiver(config, tmp_path / "receiver.yaml")
    gui = WebGui(
        tmp_path, webgui={"upload_sender": "webgui"}, extra={"receiver": config["receiver"]}
    )
    gui.add_user("operator", "operator")
    series = generate_series(tmp_path / "series", count=3, size=(64, 64))
    problems: list[str] = []
    images = screenshot_folder(tmp_path)
    try:
        base = gui.start()
        with chromium() as browser:
            context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
            page = context.new_page()
            watch(page, problems)
            sign_in(page, base, "operator")
            page.click("nav[aria-label=Main] >> text=Upload")
            page.wait_for_url(base + "/upload")
            page.set_input_files("#upload-files", [str(p) for p in series.paths])
            page.click("#upload-submit")
            page.wait_for_selector("#upload-results")
            assert "3 of 3 files stored" in page.inner_text("#upload-results h2").lower()
            rows = page.locator("#upload-results tbody tr")
            assert rows.count() == 3
            for i, instance in enumerate(series.instances):
                assert instance.path.name in rows.nth(i).inner_text()
                assert "stored" in rows.nth(i).inner_text().lower()
            page.screenshot(path=str(images / "webgui-upload.png"))
            context.close()
    finally:
        gui.close()
        receiver.stop()
    assert problems == []
    folder = receiver.data.stage("incoming") / series.series_uid
    assert sorted(p.stem for p in folder.glob("*.dcm")) == sorted(
        i.sop_instance_uid for i in series.instances
    )
