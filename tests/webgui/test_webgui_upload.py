"""The Upload page over HTTP: files stored through a real receiver's STOW-RS endpoint, each
file's outcome shown (escaped), the upload audited without patient data, the limits kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from webgui_harness import WebGui, csrf_of, sign_in

from mercure.testing.receiver import RunningReceiver
from mercure.testing.series import generate_series
from mercure.testing.stow import start_stow_receiver, stow_receiver_config

UPLOAD_TOKEN = "webgui-upload-token-0123456789"
PAGE = {"accept": "text/html"}


@pytest.fixture
def stow_and_webgui(tmp_path: Path) -> Iterator[tuple[RunningReceiver, WebGui]]:
    """A receiver with STOW-RS (sender ``webgui``) and a web interface uploading through it,
    on one data folder."""
    config = stow_receiver_config(tmp_path / "data", senders={"webgui": UPLOAD_TOKEN})
    receiver = start_stow_receiver(config, tmp_path / "receiver.yaml")
    gui = WebGui(
        tmp_path,
        webgui={"upload_sender": "webgui", "max_upload_mb": 2},
        extra={"receiver": config["receiver"]},
    )
    gui.add_user("operator", "operator")
    try:
        yield receiver, gui
    finally:
        gui.close()
        receiver.stop()


def _operator(gui: WebGui) -> httpx.Client:
    client = gui.client()
    assert sign_in(client, "operator").status_code == 303
    return client


def test_operator_uploads_files_and_sees_each_outcome(
    stow_and_webgui: tuple[RunningReceiver, WebGui], tmp_path: Path
) -> None:
    """Two DICOM files and one that is not: two stored in incoming/, one failed with the
    reason; the file name is escaped; the audit entry counts, and holds no patient data."""
    receiver, gui = stow_and_webgui
    series = generate_series(
        tmp_path / "series", count=2, size=(32, 32), patient_name="Secret^Patient"
    )
    client = _operator(gui)
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in series.paths] + [
        ("files", ("<b>notes</b>.txt", b"not DICOM", "text/plain"))
    ]
    answer = client.post("/upload", data={"csrf_token": csrf_of(client)}, files=files, headers=PAGE)
    assert answer.status_code == 200, answer.text
    assert "2 of 3 files stored" in answer.text
    assert "&lt;b&gt;notes&lt;/b&gt;.txt" in answer.text
    assert "<b>notes</b>" not in answer.text
    assert "no &#39;DICM&#39;" in answer.text or "no 'DICM'" in answer.text
    placed = {p.stem for p in receiver.instances()}
    assert placed == {i.sop_instance_uid for i in series.instances}
    [entry] = [e for e in gui.written_events() if e.kind == "audit.upload.store"]
    assert entry.data["user"] == "operator"
    assert entry.data["instances"] == 2
    assert entry.data["failed"] == 1
    assert "Secret" not in entry.model_dump_json()
    client.close()


def test_upload_over_the_limit_is_refused(
    stow_and_webgui: tuple[RunningReceiver, WebGui],
) -> None:
    """More than webgui.max_upload_mb: 413 before anything is sent on."""
    receiver, gui = stow_and_webgui
    client = _operator(gui)
    big = ("files", ("big.dcm", bytes(3 << 20), "application/dicom"))
    answer = client.post("/upload", data={"csrf_token": csrf_of(client)}, files=[big])
    assert answer.status_code == 413
    assert receiver.instances() == []
    assert client.get("/upload", headers=PAGE).status_code == 200  # still signed in
    client.close()


def test_page_says_how_to_configure_uploads_when_off(tmp_path: Path) -> None:
    """Without receiver.stow / webgui.upload_sender the page explains what to add."""
    gui = WebGui(tmp_path)
    gui.add_user("operator", "operator")
    try:
        client = _operator(gui)
        page = client.get("/upload", headers=PAGE)
        assert page.status_code == 200
        assert "STOW-RS endpoint is off" in page.text
        assert "upload_sender" in page.text
        assert 'type="file"' not in page.text
        client.close()
    finally:
        gui.close()


def test_upload_needs_the_operator_role(webgui: WebGui) -> None:
    """Viewers may not upload; the menu offers Upload to operators only."""
    client = webgui.client()
    sign_in(client, "viewer")
    assert client.get("/upload", headers=PAGE).status_code == 403
    assert ">Upload<" not in client.get("/", headers=PAGE).text
    client.close()
    operator = _operator(webgui)
    assert ">Upload<" in operator.get("/", headers=PAGE).text
    operator.close()
