"""The Queue and task pages in Chromium against a real installation (`mercure run`, every
service, series sent with storescu): an operator requeues a task whose DICOM target was down
once the target is up, and pauses and resumes the outgoing stage; a viewer gets no action.
The "Retrieve jobs" table with two jobs, on the in-process web interface.
Screenshots: docs/images/webgui-queue.png, webgui-task.png and webgui-queue-retrieve.png
(MERCURE_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, screenshot_folder
from test_webgui_browser import watch
from test_webgui_browser_system import add_user
from webgui_harness import PASSWORD, WebGui

from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder, Stage
from mercure.testing.installation import MercureProcess, write_config
from mercure.testing.peers.dcmtk import StoreSCP, storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

INSTANCES = 6


class Site:
    """`mercure run` with one rule sending everything to ``target``; its web interface URL."""

    def __init__(self, folder: Path, target: dict[str, Any]) -> None:
        self.folder = folder
        self.receiver_port = free_port()
        bookkeeper_port, webgui_port = free_port(), free_port()
        self.config = write_config(
            folder,
            receiver_port=self.receiver_port,
            bookkeeper_port=bookkeeper_port,
            webgui_port=webgui_port,
            targets={"pacs": target},
            rules={"everything": {"rule": "True", "action": "route", "targets": ["pacs"]}},
        )
        self.mercure = MercureProcess(
            "run",
            self.config,
            listen_port=self.receiver_port,
            health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
        )
        self.url = f"http://127.0.0.1:{webgui_port}"
        self.data = DataFolder(folder / "data")

    def send_series(self, seed: int) -> None:
        """A small series, sent with storescu."""
        series = generate_series(self.folder / f"series-{seed}", "tiny", INSTANCES, seed=seed)
        storescu(self.receiver_port, series.folder, calling_aet="CT01", called_aet="MERCURE")

    def tasks_in(self, stage: Stage) -> list[str]:
        """Task ids in a stage."""
        return [p.name for p in self.data.entries(stage)]


@pytest.fixture
def site_factory(tmp_path: Path) -> Iterator[Any]:
    """Makes the installation of a test (stopped afterwards, with a clean exit)."""
    made: list[Site] = []

    def make(target: dict[str, Any]) -> Site:
        site = Site(tmp_path, target)
        site.mercure.__enter__()
        made.append(site)
        return site

    yield make
    for site in made:
        assert site.mercure.shutdown() == 0, site.mercure.log_text()


def sign_in(page: Any, url: str, name: str) -> None:
    """Sign in through the form."""
    page.goto(url + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


@pytest.mark.slow
@pytest.mark.peers
def test_operator_requeues_a_task_once_its_target_is_up(tmp_path: Path, site_factory: Any) -> None:
    """Target down: the series ends in error/; the operator opens its task page, the target
    starts, Requeue: the task is delivered (success/) and the target has every instance."""
    target_port = free_port()
    site = site_factory(
        {"type": "dicom", "host": "127.0.0.1", "port": target_port, "aet_target": "STORESCP"}
    )
    add_user(site.config, "olga", "operator")
    site.send_series(seed=11)
    wait_until(lambda: site.tasks_in(Stage.ERROR), timeout=40, interval=0.2, message="error/")
    [task_id] = site.tasks_in(Stage.ERROR)
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        watch(page, problems)
        sign_in(page, site.url, "olga")
        page.goto(site.url + "/queue?stage=error")
        page.click(f"a[href='/queue/tasks/{task_id}']")
        page.wait_for_url(re.compile(f"/queue/tasks/{task_id}$"))
        assert "error" in page.inner_text(".task-where")

        # The bookkeeper's timeline has the failure once the events arrived (in batches).
        def timeline_has_failure() -> bool:
            page.reload()
            return "task.failed" in page.inner_text("main")

        wait_until(timeline_has_failure, timeout=20, interval=1, message="task.failed shown")
        page.screenshot(path=str(screenshot_folder(tmp_path) / "webgui-task.png"))

        with StoreSCP(tmp_path / "pacs", port=target_port, ae_title="STORESCP") as pacs:
            page.click("button.requeue")
            page.wait_for_url(re.compile(f"/queue/tasks/{task_id}$"))
            assert f"{task_id}: back in outgoing/" in page.inner_text(".flash")
            page.wait_for_selector(".task-where .stage-success", timeout=30000)
            assert len(pacs.wait_for_files(INSTANCES)) == INSTANCES
        assert site.tasks_in(Stage.SUCCESS) == [task_id]
        assert "6 / 6" in page.inner_text("table.delivery")
    assert problems == []


@pytest.mark.slow
@pytest.mark.peers
def test_operator_pauses_and_resumes_outgoing(tmp_path: Path, site_factory: Any) -> None:
    """Paused in the browser: a new series waits in outgoing/; resumed: it is delivered."""
    archive = tmp_path / "archive"
    site = site_factory({"type": "folder", "folder": str(archive)})
    add_user(site.config, "olga", "operator")
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
        watch(page, problems)
        sign_in(page, site.url, "olga")
        page.goto(site.url + "/queue")
        page.click("button.pause[data-stage=outgoing]")
        page.wait_for_selector(".flash.good")
        assert "outgoing queue paused" in page.inner_text(".flash")
        assert site.data.is_paused(Stage.OUTGOING)

        site.send_series(seed=12)
        wait_until(lambda: site.tasks_in(Stage.OUTGOING), timeout=30, interval=0.2)
        # The list refreshes itself: the task shows up, waiting because the stage is paused.
        page.locator("#queue-live td.status", has_text="outgoing is paused").wait_for(timeout=15000)
        assert not archive.exists() or not list(archive.rglob("*.dcm"))
        page.screenshot(path=str(screenshot_folder(tmp_path) / "webgui-queue.png"), full_page=True)

        page.click("button.resume[data-stage=outgoing]")
        page.wait_for_selector(".flash.good")
        assert "outgoing queue resumed" in page.inner_text(".flash")
        wait_until(
            lambda: archive.is_dir() and len(list(archive.rglob("*.dcm"))) == INSTANCES,
            timeout=30,
            interval=0.2,
            message="the series delivered after resume",
        )
        wait_until(lambda: site.tasks_in(Stage.SUCCESS), timeout=15, interval=0.2)
    assert problems == []


@pytest.mark.slow
def test_viewer_sees_no_action_and_a_forged_post_is_refused(webgui: WebGui) -> None:
    """A viewer's task page has no Requeue button; posting it anyway, with the viewer's own
    session and CSRF token, answers 403 and the task stays in error/."""
    from test_webgui_queue import place

    place(webgui, Stage.ERROR, "t-failed", reason="association refused")
    base = webgui.start()
    with chromium() as browser:
        page = browser.new_page()  # type: ignore[attr-defined]
        sign_in(page, base, "viewer")
        page.goto(base + "/queue/tasks/t-failed")
        assert "association refused" in page.inner_text("main")
        assert page.locator("button.requeue").count() == 0
        assert page.locator("form[action$='/requeue']").count() == 0
        token = page.get_attribute("meta[name=csrf-token]", "content")
        answer = page.request.post(
            base + "/queue/tasks/t-failed/requeue",
            form={"csrf_token": token},
            max_redirects=0,
        )
        assert answer.status == 403
        assert "needs the operator role" in answer.text()
    assert (webgui.data.stage(Stage.ERROR) / "t-failed").is_dir()


@pytest.mark.slow
def test_queue_page_shows_retrieve_jobs_with_progress(tmp_path: Path, webgui: WebGui) -> None:
    """Two jobs from the bookkeeper's events: newest first, progress bars, no CSP violation."""
    from test_webgui_queue_retrieve import job_event

    now = utcnow()
    webgui.store_events(
        [
            job_event(
                "lab42",
                "running",
                now - timedelta(seconds=20),
                studies_done=140,
                studies_failed=3,
                studies_remaining=57,
                studies_total=200,
                instances=51234,
                rate=96.4,
            ),
            job_event(
                "night-ct",
                "waiting-offpeak",
                now - timedelta(minutes=40),
                offpeak=True,
                studies_done=12,
                studies_remaining=8,
                reason="outside the off-peak window 22:00-06:00",
            ),
        ]
    )
    base = webgui.start()
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        watch(page, problems)
        sign_in(page, base, "viewer")
        page.goto(base + "/queue")
        table = page.locator("table.retrieve-table")
        table.wait_for()
        jobs = page.locator("tr.retrieve-job")
        assert [jobs.nth(i).get_attribute("data-job") for i in range(jobs.count())] == [
            "lab42",
            "night-ct",
        ]
        assert page.locator("tr[data-job=lab42] progress").get_attribute("value") == "143"
        assert page.locator("tr[data-job=night-ct] progress").get_attribute("max") == "20"
        assert "3 failed" in jobs.nth(0).inner_text()
        assert "off-peak" in jobs.nth(1).inner_text()
        page.locator("section.retrieve-jobs").screenshot(
            path=str(screenshot_folder(tmp_path) / "webgui-queue-retrieve.png")
        )
    assert problems == []
