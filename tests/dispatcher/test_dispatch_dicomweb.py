"""The dicomweb target against Orthanc's DICOMweb plug-in, and refusals by a real PACS."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dispatch_site import Site

from mercure.cli.main import main
from mercure.core.datafolder import Stage
from mercure.dicomnet.filemeta import read_file_meta
from mercure.testing.peers import Orthanc
from mercure.testing.series import GeneratedSeries, generate_series

pytestmark = pytest.mark.peers


def corrupt_dataset(path: Path) -> None:
    """Keep the File Meta Information, replace the dataset by bytes no DICOM parser accepts."""
    meta = read_file_meta(path)
    head = path.read_bytes()[: meta.dataset_offset]
    path.write_bytes(head + b"\x08\x00\x05\x00CS\xff\x7fnot a dataset")


def dicomweb_target(orthanc: Orthanc, **extra: object) -> dict[str, object]:
    """A dicomweb target for Orthanc's DICOMweb root."""
    return {"type": "dicomweb", "url": orthanc.dicomweb_url, **extra}


def test_orthanc_stores_every_instance_sent_by_stow_rs(
    site: Site, orthanc: Orthanc, mr_series: GeneratedSeries
) -> None:
    """Batches of 4 instances: what Orthanc stored equals what was sent, instance by instance."""
    files = mr_series.paths[:10]
    site.configure({"web": dicomweb_target(orthanc, batch_instances=4)})
    task_id = site.add_task(files, ["web"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    stored = {}
    for instance_id in orthanc.instances():
        ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance_id)))
        stored[ds.SOPInstanceUID] = ds
    assert len(stored) == len(files)
    for path in files:
        sent = pydicom.dcmread(path)
        assert stored[sent.SOPInstanceUID] == sent
    status = site.task_json(task_id)["dispatch"]["status"]["web"]
    assert status["instances_sent"] == 10


def test_refused_instances_are_listed_and_only_they_are_retried(
    site: Site, orthanc: Orthanc, tmp_path: Path
) -> None:
    """Orthanc refuses 2 unparseable instances: the reason names exactly those; only they are
    sent again."""
    series = generate_series(tmp_path / "series", "tiny", 6)
    refused = sorted(series.paths)[1::3]
    for path in refused:
        corrupt_dataset(path)
    target = dicomweb_target(orthanc)
    site.configure({"pacs": target}, retry_attempts=2)
    task_id = site.add_task(series.paths, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert reason.startswith(f"pacs: refused 2 of 6 instances: {refused[0].name}: ")
    assert f"; {refused[1].name}: " in reason
    assert reason.count(".dcm: ") == 2
    begins = [e["instances"] for e in site.events() if e["kind"] == "dispatch.begin"]
    assert begins == [6, 2]
    assert len(orthanc.instances()) == 4


@pytest.fixture
def orthanc_with_login(tmp_path: Path) -> Iterator[Orthanc]:
    """An Orthanc that requires HTTP basic authentication (user alice, password right)."""
    users = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "right"}}
    orthanc = Orthanc(tmp_path / "orthanc-login", config=users)
    orthanc.client.auth = httpx.BasicAuth("alice", "right")  # for its readiness check
    with orthanc:
        yield orthanc


@pytest.mark.parametrize("password", ["right", "wrong"])
def test_basic_auth_is_sent_and_a_wrong_password_is_a_clear_error(
    site: Site, orthanc_with_login: Orthanc, tmp_path: Path, password: str
) -> None:
    """The right password delivers; a wrong one ends in error/ saying the credentials failed."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    target = dicomweb_target(orthanc_with_login, auth="basic", username="alice", password=password)
    site.configure({"web": target}, retry_attempts=2)
    task_id = site.add_task(series.paths, ["web"])
    site.run_until_finished(task_id)
    if password == "right":
        assert site.where(task_id) == Stage.SUCCESS
        assert len(orthanc_with_login.instances()) == 2
    else:
        assert site.where(task_id) == Stage.ERROR
        reason = site.task_json(task_id)["info"]["reason"]
        assert (
            reason == f"web: {orthanc_with_login.dicomweb_url} refused the credentials (HTTP 401)"
        )


def test_test_target_probes_dicomweb_with_credentials(
    site: Site, orthanc_with_login: Orthanc, capsys: pytest.CaptureFixture[str]
) -> None:
    """test-target's DICOMweb probe passes with the right login and names a refused one."""
    good = dicomweb_target(orthanc_with_login, auth="basic", username="alice", password="right")
    bad = {**good, "password": "wrong"}
    site.configure({"good": good, "bad": bad})
    assert main(["test-target", "good", "--config", str(site.config_path)]) == 0
    assert "good: OK: DICOMweb service" in capsys.readouterr().out
    assert main(["test-target", "bad", "--config", str(site.config_path)]) == 1
    assert "refused the credentials (HTTP 401)" in capsys.readouterr().err
