"""The web interface of a real installation (`mercure run`, every service) in Chromium:
the first-user hint, sign-in, the overview with every service up and a series that went
through, the series found by its accession number with its history, sign-out. Its
screenshots are docs/images/webgui-*.png (written there with MERCURE_UPDATE_SCREENSHOTS=1).
The user is made with `mercure user add`, as the sign-in page tells the administrator.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, screenshot_folder
from webgui_harness import PASSWORD

from mercure.core.heartbeat import liveness, read_heartbeats
from mercure.core.installed import installed_services
from mercure.testing.installation import MercureProcess, write_config
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until


@contextlib.contextmanager
def running_router(
    tmp_path: Path, *, targets: dict[str, Any], rules: dict[str, Any]
) -> Iterator[tuple[MercureProcess, str]]:
    """`mercure run` with every service on free ports; the process and the webgui's URL."""
    receiver_port, bookkeeper_port, webgui_port = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        webgui_port=webgui_port,
        targets=targets,
        rules=rules,
    )
    mercure = MercureProcess(
        "run",
        config,
        listen_port=receiver_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    with mercure:
        yield mercure, f"http://127.0.0.1:{webgui_port}"
        assert mercure.shutdown() == 0, mercure.log_text()


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[tuple[MercureProcess, str]]:
    """`mercure run` with every service, a folder target for everything; the webgui's URL."""
    with running_router(
        tmp_path,
        targets={"archive": {"type": "folder", "folder": str(tmp_path / "archive")}},
        rules={"everything": {"rule": "True", "action": "route", "targets": ["archive"]}},
    ) as running:
        yield running


def add_user(config: Path, name: str, role: str) -> None:
    """`mercure user add NAME --role ROLE --password-stdin --config CONFIG`."""
    result = subprocess.run(
        [sys.executable, "-m", "mercure", "user", "add", name, "--role", role,
         "--password-stdin", "--config", str(config)],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def all_up(mercure: MercureProcess) -> bool:
    """Every installed service and the supervisor report running."""
    states = {beat.service: liveness(beat) for beat in read_heartbeats(mercure.run_dir)}
    return all(states.get(name) == "up" for name in ["supervisor", *installed_services()])


@pytest.mark.slow
@pytest.mark.peers
def test_administrator_signs_in_and_sees_every_service_up(
    tmp_path: Path, installation: tuple[MercureProcess, str]
) -> None:
    """First start: the page says how to make the first user; with it, the overview shows
    every service up and the series that went through; sign-out returns to the sign-in."""
    mercure, url = installation
    wait_until(lambda: all_up(mercure), timeout=60, interval=0.2, message="all services up")
    series = generate_series(tmp_path / "series", "tiny", 12, seed=7)
    assert mercure.listen_port is not None
    storescu(mercure.listen_port, series.folder, calling_aet="CT01", called_aet="MERCURE")
    archive = tmp_path / "archive"
    wait_until(
        lambda: archive.is_dir() and len(list(archive.rglob("*.dcm"))) >= 12,
        timeout=60,
        interval=0.2,
        message="the series in the archive",
    )
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: problems.append(dialog.message))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url + "/")
        assert page.url.startswith(url + "/login")
        assert "mercure user add admin --role admin --config" in page.inner_text("main")
        images = screenshot_folder(tmp_path)
        page.screenshot(path=str(images / "webgui-first-user.png"))

        add_user(mercure.config_path, "admin", "admin")
        page.goto(url + "/login")
        page.fill("input[name=name]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        running = f"All {len(installed_services())} services running"
        # Polled from Python: a string predicate polled inside the page needs eval, which the
        # page's CSP (rightly) forbids once the first check is not already true.
        wait_until(
            lambda: running in page.inner_text(".summary"),
            timeout=20,
            interval=0.5,
            message=running,
        )
        wait_until(
            lambda: (
                page.locator("table.figures").count() > 0
                and "12" in page.inner_text("table.figures")
            ),
            timeout=30,
            interval=1.0,
            message="12 instances in the overview's figures",
        )
        page.wait_for_selector("#throughput-chart canvas", timeout=10000)
        page.screenshot(path=str(images / "webgui-overview.png"), full_page=True)

        # Find the series by its accession number; its history shows it delivered.
        page.click("nav >> text=Search")
        page.fill("input[name=accession]", series.accession_number)
        page.click("form.search-form button[type=submit]")
        page.wait_for_url(lambda address: "accession=" in address)
        assert page.locator("table.results tbody tr").count() == 1
        row = page.inner_text("table.results tbody tr")
        assert "Test, Patient7" in row and "success" in row, row
        page.click("table.results tbody tr a")
        page.wait_for_url(lambda address: series.series_uid in address)
        history = page.inner_text("main")
        assert "dispatch.complete" in history and "archive" in history, history
        page.click("button.signout")
        page.wait_for_url(url + "/login")
    assert problems == []
    assert (images / "webgui-overview.png").stat().st_size < 400_000
