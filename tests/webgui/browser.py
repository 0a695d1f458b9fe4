"""Playwright driving Debian's Chromium (never ``playwright install``: it would download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parents[2]
DOCS_IMAGES = ROOT / "docs" / "images"
UPDATE_SCREENSHOTS = "MERCURE_UPDATE_SCREENSHOTS"
"""Set to 1 to write the browser tests' screenshots into docs/images/ (commit them then)."""


def screenshot_folder(tmp_path: Path) -> Path:
    """docs/images/ when $MERCURE_UPDATE_SCREENSHOTS is 1, else the test's own folder."""
    import os

    folder = DOCS_IMAGES if os.environ.get(UPDATE_SCREENSHOTS) == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def require_chromium() -> None:
    """Fail with the install command when the browser or Playwright is missing."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is needed: apt-get install chromium (scripts/install.sh --test)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("Playwright is needed: pip install playwright (scripts/install.sh --test)")


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium browser."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
