"""The web interface of a real installation (`mercure run`, every service) in Chromium:
the first-user hint, sign-in, the overview with all seven services up and a series that went
through, sign-out. Its screenshots are docs/images/webgui-*.png (written there with
MERCURE_UPDATE_SCREENSHOTS=1).

Until the user store (branch webgui-users) is merged, the users come from the FAKE in
fake_users.py, served in front of the real bookkeeper (bookkeeper.url points at it); then
this test creates the user with `mercure user add` instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
import yaml
from browser import chromium, screenshot_folder
from fake_users import FakeUserStore, forwarding_bookkeeper
from webgui_harness import PASSWORD

from mercure.core.heartbeat import liveness, read_heartbeats
from mercure.core.installed import installed_services
from mercure.testing.installation import API_KEY, MercureProcess, write_config
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        """Signals belong to pytest."""


@pytest.fixture
def users() -> FakeUserStore:
    """The FAKE user store (until the real one is merged)."""
    return FakeUserStore(API_KEY)


@pytest.fixture
def installation(tmp_path: Path, users: FakeUserStore) -> Iterator[tuple[MercureProcess, str]]:
    """`mercure run` with every service, a folder target for everything; the webgui's URL."""
    receiver_port, bookkeeper_port, proxy_port = free_port(), free_port(), free_port()
    webgui_port = free_port()
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        webgui_port=webgui_port,
        targets={"archive": {"type": "folder", "folder": str(tmp_path / "archive")}},
        rules={"everything": {"rule": "True", "action": "route", "targets": ["archive"]}},
    )
    document = yaml.safe_load(config.read_text())
    document["bookkeeper"]["url"] = f"http://127.0.0.1:{proxy_port}"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    proxy = _ThreadServer(
        uvicorn.Config(
            forwarding_bookkeeper(f"http://127.0.0.1:{bookkeeper_port}", users),
            host="127.0.0.1",
            port=proxy_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    wait_until(lambda: proxy.started, timeout=10)
    mercure = MercureProcess(
        "run",
        config,
        listen_port=receiver_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    try:
        with mercure:
            yield mercure, f"http://127.0.0.1:{webgui_port}"
            assert mercure.shutdown() == 0, mercure.log_text()
    finally:
        proxy.should_exit = True
        thread.join(10)


def all_up(mercure: MercureProcess) -> bool:
    """Every installed service and the supervisor report running."""
    states = {beat.service: liveness(beat) for beat in read_heartbeats(mercure.run_dir)}
    return all(states.get(name) == "up" for name in ["supervisor", *installed_services()])


@pytest.mark.slow
@pytest.mark.peers
def test_administrator_signs_in_and_sees_every_service_up(
    tmp_path: Path, installation: tuple[MercureProcess, str], users: FakeUserStore
) -> None:
    """First start: the page says how to make the first user; with it, the overview shows
    seven services up and the series that went through; sign-out returns to the sign-in."""
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

        users.add("admin", "admin", PASSWORD)  # `mercure user add` once the store is merged
        page.goto(url + "/login")
        page.fill("input[name=name]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        page.wait_for_function(
            "document.querySelector('.summary').innerText.includes('All 7 services running')",
            timeout=20000,
        )
        page.wait_for_function(
            "document.querySelector('table.figures') && "
            "document.querySelector('table.figures').innerText.includes('12')",
            timeout=30000,
            polling=1000,
        )
        page.wait_for_selector("#throughput-chart canvas", timeout=10000)
        page.screenshot(path=str(images / "webgui-overview.png"), full_page=True)
        page.click("button.signout")
        page.wait_for_url(url + "/login")
    assert problems == []
    assert (images / "webgui-overview.png").stat().st_size < 400_000
