"""Real STOW-RS clients against the receiver's endpoint: our own dispatcher's dicomweb target,
Orthanc's DICOMweb plug-in, curl, and HTTPS with a test CA."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mercure.core.config.models import DicomWebTarget
from mercure.core.task import TaskInfo
from mercure.dispatcher.targets.base import SendJob
from mercure.dispatcher.targets.dicomweb import DicomWebPlugin
from mercure.testing.peers import Orthanc
from mercure.testing.pki import make_test_pki
from mercure.testing.receiver import RunningReceiver, dataset_bytes
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.stow import TOKEN, multipart_body, start_stow_receiver, stow_receiver_config

pytestmark = pytest.mark.peers


@pytest.fixture
def stow_factory(tmp_path: Path) -> Iterator[Callable[..., RunningReceiver]]:
    """Start receivers with their STOW-RS endpoint on; all are stopped afterwards."""
    started: list[RunningReceiver] = []

    def make(**kwargs: Any) -> RunningReceiver:
        config = stow_receiver_config(tmp_path / "data", **kwargs)
        running = start_stow_receiver(config, tmp_path / f"mercure-{len(started)}.yaml")
        started.append(running)
        return running

    yield make
    for running in started:
        if running.process is not None:
            running.stop()


def _arrived_intact(receiver: RunningReceiver, series: GeneratedSeries) -> None:
    placed = {path.stem: path for path in receiver.instances()}
    assert set(placed) == {i.sop_instance_uid for i in series.instances}
    for instance in series.instances:
        assert dataset_bytes(placed[instance.sop_instance_uid]) == dataset_bytes(instance.path)


def test_our_dispatchers_dicomweb_target_delivers_every_instance(
    stow_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """Two of our parts end to end: the dicomweb target (batches of 4) to our endpoint."""
    receiver = stow_factory()
    series = generate_series(tmp_path / "series", count=10, size=(64, 64))
    target = DicomWebTarget.model_validate(
        {
            "type": "dicomweb",
            "url": receiver.extra["stow_url"],
            "auth": "bearer",
            "token": TOKEN,
            "batch_instances": 4,
        }
    )
    plugin = DicomWebPlugin("mercure", target)
    confirmed: list[Path] = []
    job = SendJob(
        task_id="t1",
        task_dir=tmp_path,
        info=TaskInfo(action="route", uid=series.series_uid),
        files=list(series.paths),
        total_files=len(series.paths),
    )
    result = asyncio.run(plugin.send(job, lambda path, size: confirmed.append(path)))
    assert result.rejected == {}
    assert sorted(confirmed) == sorted(series.paths)
    _arrived_intact(receiver, series)


def test_orthanc_dicomweb_client_stores_to_us(
    stow_factory: Callable[..., RunningReceiver],
    orthanc_factory: Callable[..., Orthanc],
    tmp_path: Path,
) -> None:
    """Orthanc's DICOMweb plug-in, configured with our URL and bearer token, sends a study."""
    receiver = stow_factory()
    series = generate_series(tmp_path / "series", count=5, size=(64, 64))
    orthanc = orthanc_factory(
        config={
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "Servers": {
                    "mercure": {
                        "Url": receiver.extra["stow_url"] + "/",
                        "HttpHeaders": {"Authorization": f"Bearer {TOKEN}"},
                    }
                },
            }
        }
    )
    orthanc.upload(series.paths)
    studies = orthanc.request("GET", "/studies").json()
    answer = orthanc.request(
        "POST", "/dicom-web/servers/mercure/stow", json={"Resources": studies, "Synchronous": True}
    )
    assert answer.status_code == 200, answer.text
    _arrived_intact(receiver, series)


def test_curl_stores_and_reads_the_answer(
    stow_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """The documented curl example works as written (body from a file)."""
    receiver = stow_factory()
    series = generate_series(tmp_path / "series", count=3, size=(32, 32))
    content_type, body = multipart_body(series.paths, boundary="mercure-boundary")
    body_file = tmp_path / "body.bin"
    body_file.write_bytes(body)
    done = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", f"Authorization: Bearer {TOKEN}",
         "-H", f"Content-Type: {content_type}", "--data-binary", f"@{body_file}",
         "-w", "\n%{http_code}", f"{receiver.extra['stow_url']}/studies"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    answer, _, code = done.stdout.rpartition("\n")
    assert code == "200", done.stdout
    assert len(json.loads(answer)["00081199"]["Value"]) == 3
    _arrived_intact(receiver, series)


def test_https_with_a_test_ca(stow_factory: Callable[..., RunningReceiver], tmp_path: Path) -> None:
    """With tls: the certificate verifies against the CA; plain HTTP is not answered as HTTP."""
    pki = make_test_pki(tmp_path / "pki")
    receiver = stow_factory(
        stow={"tls": {"certificate": str(pki / "server.pem"), "key": str(pki / "server.key")}}
    )
    url = receiver.extra["stow_url"]
    assert url.startswith("https://")
    series = generate_series(tmp_path / "series", count=2, size=(32, 32))
    content_type, body = multipart_body(series.paths)
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"}
    answer = httpx.post(
        f"{url}/studies",
        content=body,
        headers=headers,
        verify=ssl.create_default_context(cafile=str(pki / "ca.pem")),
    )
    assert answer.status_code == 200, answer.text
    _arrived_intact(receiver, series)
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{url}/studies", content=body, headers=headers, verify=True)
    with pytest.raises(httpx.HTTPError):
        httpx.post(url.replace("https", "http") + "/studies", content=body, headers=headers)
