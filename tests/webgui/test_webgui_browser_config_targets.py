"""The Targets and Modules pages in a real Chromium: an admin creates a DICOM target pointing
at a running Orthanc, presses Test and sees every step OK, saves it; the list shows it with its
statistics; the modules list shows image presence; the same for a DICOM source (Test: C-ECHO
and a C-FIND). No CSP violation or script error. The screenshots are
docs/images/webgui-targets.png, webgui-target-edit.png, webgui-modules.png,
webgui-source-test.png and webgui-sources.png (written there with
MERCURE_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import chromium, screenshot_folder
from test_webgui_browser import sign_in, watch
from test_webgui_targets import configure
from webgui_harness import WebGui

from mercure.core.clock import utcnow
from mercure.core.events import Event
from mercure.testing.peers import Orthanc
from mercure.testing.podman import PodmanService, podman_available
from mercure.testing.ports import free_port
from mercure.testing.series import generate_study

VIEWPORT = {"width": 1360, "height": 900}
MODULE_IMAGE = "localhost/mercure-anonymizer:2"


@contextlib.contextmanager
def engine(folder: Path) -> Iterator[str | None]:
    """Podman's Docker API with the module image built, when Podman is installed."""
    if not podman_available():
        yield None
        return
    with PodmanService(folder) as service:
        service.build_module_image(MODULE_IMAGE, "#!/bin/sh\nexit 0\n", folder / "image")
        yield service.url


def history(webgui: WebGui) -> None:
    """A day of deliveries: the archive fine, the research share failing."""
    now = utcnow()
    events = []
    for n in range(12):
        at = now - timedelta(hours=n * 2, minutes=5)
        for target, seconds in (("archive", 3.2 + n % 3), ("cloud", 11.0 + n)):
            task = f"task-{target}-{n}"
            events.append(Event(service="dispatcher", kind="dispatch.begin", time=at,
                                task_id=task, data={"target": target}))  # fmt: skip
            events.append(
                Event(
                    service="dispatcher",
                    kind="dispatch.complete",
                    time=at + timedelta(seconds=seconds),
                    task_id=task,
                    data={"target": target, "instances": 120},
                )
            )
    for n in range(3):
        at = now - timedelta(hours=n * 5, minutes=40)
        events.append(
            Event(
                service="dispatcher",
                kind="dispatch.failed",
                time=at,
                task_id=f"r{n}",
                severity="error",
                data={
                    "target": "research",
                    "final": n == 0,
                    "will_retry": n != 0,
                    "reason": "SFTP login as drop@research.example:22 failed: Authentication "
                    "failed.",
                },
            )
        )
    webgui.store_events(events)


@pytest.mark.slow
@pytest.mark.peers
def test_admin_creates_and_tests_a_dicom_target_at_orthanc(
    webgui: WebGui, orthanc: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create a DICOM target at Orthanc in the browser, press Test: every step OK; save it; the
    list and the modules page show what they should."""
    images = screenshot_folder(tmp_path)
    monkeypatch.setenv("S3_SECRET", "s3-secret-value")
    with engine(tmp_path / "podman") as docker_url:
        configure(
            webgui,
            processing={"docker_url": docker_url or f"unix://{tmp_path / 'none.sock'}"},
            targets={
                "archive": {"type": "folder", "folder": str(tmp_path), "comment": "long-term copy"},
                "cloud": {"type": "s3", "bucket": "mercure-ct", "prefix": "ct/",
                          "region": "eu-central-1", "access_key_id": "AKIAEXAMPLE",
                          "secret_access_key": "${S3_SECRET}"},
                "research": {"type": "sftp", "host": "research.example", "user": "drop",
                             "password": "not-shown-anywhere", "folder": "/incoming"},
            },
            modules={
                "anonymizer": {"runner": "docker", "image": MODULE_IMAGE, "timeout": "15m",
                               "memory_limit_mb": 2048, "cpu_limit": 2,
                               "settings": {"keep_dates_shifted": True}},
                "segmentation": {"runner": "docker", "image": "localhost/lung-seg:4",
                                 "gpu": True, "timeout": "1h"},
                "dose-report": {"runner": "command", "command": ["/opt/dose/report", "--pdf"],
                                "timeout": 300},
            },
            rules={
                "ct-archive": {"rule": "tags.Modality == 'CT'", "targets": ["archive", "cloud"]},
                "research": {"rule": "tags.StudyDescription.startswith('STUDY')",
                             "action": "both", "processing_module": "anonymizer",
                             "targets": "research"},
            },
        )  # fmt: skip
        history(webgui)
        base = webgui.start()
        problems: list[str] = []
        with chromium() as browser:
            context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
            page: Any = context.new_page()
            watch(page, problems)
            sign_in(page, base, "admin")
            page.goto(base + "/targets")
            page.click("text=Add target")
            page.select_option("#type-choice", "dicom")
            page.click("text=Choose")
            page.fill("#f-target_name", "pacs")
            page.fill("#f-host", "127.0.0.1")
            page.fill("#f-port", str(orthanc.dicom_port))
            page.fill("#f-aet_target", orthanc.aet)
            page.fill("#f-comment", "Orthanc in the reading room")
            page.click("button:has-text('Test')")
            page.wait_for_selector("#test-result .summary", timeout=40_000)
            result = page.inner_text("#test-result")
            assert "pacs: OK" in result, result
            rows = page.locator("#test-result table.steps tbody tr")
            steps = {}
            for i in range(rows.count()):
                cells = rows.nth(i).locator("td")
                steps[cells.nth(0).inner_text()] = cells.nth(1).inner_text()
            assert steps == {
                "resolve host": "OK",
                "TCP connect": "OK",
                "TLS handshake": "skipped",
                "association accepted": "OK",
                "C-ECHO": "OK",
            }
            page.screenshot(path=str(images / "webgui-target-edit.png"), full_page=True)
            page.click("button:has-text('Save')")
            page.wait_for_url(base + "/targets/pacs")
            assert "Target pacs saved." in page.inner_text(".flash")
            saved = yaml.safe_load(webgui.config_path.read_text())["targets"]["pacs"]
            assert saved["port"] == orthanc.dicom_port and saved["aet_target"] == orthanc.aet
            page.goto(base + "/targets")
            table = page.inner_text("table.targets")
            assert "pacs" in table and f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}" in table
            assert "Authentication failed" in table
            assert "not-shown-anywhere" not in page.content()
            page.screenshot(path=str(images / "webgui-targets.png"), full_page=True)
            page.goto(base + "/modules")
            modules = page.inner_text("table.modules")
            if docker_url:
                assert "present" in modules and "missing" in modules
            page.screenshot(path=str(images / "webgui-modules.png"), full_page=True)
        assert problems == []


def _steps(page: Any) -> dict[str, str]:
    rows = page.locator("#test-result table.steps tbody tr")
    steps = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        steps[cells.nth(0).inner_text()] = cells.nth(1).inner_text()
    return steps


@pytest.mark.slow
@pytest.mark.peers
def test_admin_creates_and_tests_a_dicom_source_at_orthanc(
    webgui: WebGui, orthanc_factory: Callable[..., Orthanc], tmp_path: Path
) -> None:
    """Create a C-MOVE source at Orthanc in the browser, press Test: connect, C-ECHO and a
    C-FIND OK; save it; the list shows where it is and how it retrieves."""
    images = screenshot_folder(tmp_path)
    orthanc = orthanc_factory(modalities={"mercure": ("MERCURE", "127.0.0.1", free_port())})
    orthanc.upload(generate_study(tmp_path / "study").paths)
    configure(
        webgui,
        sources={
            "research-web": {"type": "dicomweb", "url": "https://pacs.example.org/dicom-web",
                             "auth": "bearer", "token": "not-shown-anywhere",
                             "comment": "the research archive"},
        },
    )  # fmt: skip
    base = webgui.start()
    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
        page: Any = context.new_page()
        watch(page, problems)
        sign_in(page, base, "admin")
        page.goto(base + "/sources")
        page.click("text=Add source")
        page.select_option("#type-choice", "dicom")
        page.click("text=Choose")
        page.fill("#f-source_name", "pacs")
        page.fill("#f-host", "127.0.0.1")
        page.fill("#f-port", str(orthanc.dicom_port))
        page.fill("#f-aet_target", orthanc.aet)
        page.select_option("#f-retrieve_method", "c-move")
        page.fill("#f-comment", "Orthanc in the reading room")
        page.click("button:has-text('Test')")
        page.wait_for_selector("#test-result .summary", timeout=40_000)
        result = page.inner_text("#test-result")
        assert "pacs: OK" in result, result
        assert _steps(page) == {"connect": "OK", "C-ECHO": "OK", "C-FIND": "OK"}
        assert "answered with 1 study" in result
        page.screenshot(path=str(images / "webgui-source-test.png"), full_page=True)
        page.click("button:has-text('Save')")
        page.wait_for_url(base + "/sources/pacs")
        assert "Source pacs saved." in page.inner_text(".flash")
        saved = yaml.safe_load(webgui.config_path.read_text())["sources"]["pacs"]
        assert saved["port"] == orthanc.dicom_port and saved["retrieve_method"] == "c-move"
        page.goto(base + "/sources")
        table = page.inner_text("table.sources")
        assert f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}" in table
        assert "C-MOVE to MERCURE" in table and "WADO-RS" in table
        assert "not-shown-anywhere" not in page.content()
        page.screenshot(path=str(images / "webgui-sources.png"), full_page=True)
    assert problems == []
