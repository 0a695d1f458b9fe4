"""The dicom target against real peers: DCMTK storescp and Orthanc over C-STORE."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from dispatch_site import Site

from mercure.core.datafolder import Stage
from mercure.testing.peers import Orthanc, StoreSCP
from mercure.testing.peers.dcmtk import dcmtk_program
from mercure.testing.ports import free_port
from mercure.testing.series import GeneratedSeries, generate_series

pytestmark = pytest.mark.peers

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def dicom_target(port: int, aet: str, **extra: object) -> dict[str, object]:
    """A dicom target on 127.0.0.1."""
    return {"type": "dicom", "host": "127.0.0.1", "port": port, "aet_target": aet, **extra}


def jpeg_series(folder: Path, count: int) -> list[Path]:
    """A tiny series compressed with DCMTK's dcmcjpeg to JPEG Lossless SV1."""
    plain = generate_series(folder / "plain", "tiny", count, seed=7)
    out = folder / "jpeg"
    out.mkdir()
    for path in plain.paths:
        subprocess.run(
            [dcmtk_program("dcmcjpeg"), "+e1", str(path), str(out / path.name)],
            check=True,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
    return sorted(out.iterdir())


def stores_received(scp: StoreSCP) -> int:
    """How many C-STORE requests storescp logged (it must run with -v); stops it to flush."""
    scp.stop()
    return scp.log_path.read_text().count("Received Store Request")


def test_series_arrives_at_storescp_over_two_associations(
    site: Site, storescp: Callable[..., StoreSCP], tmp_path: Path
) -> None:
    """Every instance reaches storescp once, split over two parallel associations."""
    series = generate_series(tmp_path / "series", "tiny", 12)
    scp = storescp(extra_args=["-v"])
    site.configure({"pacs": dicom_target(scp.port, scp.ae_title, parallel_associations=2)})
    task_id = site.add_task(series.paths, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    assert scp.sop_instance_uids() == series.sop_instance_uids
    assert stores_received(scp) == 12
    assert scp.log_text().count("Association Received") == 2


def test_jpeg_series_is_decompressed_for_implicit_only_storescp(
    site: Site, storescp: Callable[..., StoreSCP], tmp_path: Path
) -> None:
    """A target accepting only Implicit VR LE gets the JPEG instances decompressed, pixels equal."""
    files = jpeg_series(tmp_path, 3)
    scp = storescp(syntaxes="implicit-only")
    site.configure({"pacs": dicom_target(scp.port, scp.ae_title)})
    task_id = site.add_task(files, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    received = {}
    for path in scp.wait_for_files(3):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        received[ds.SOPInstanceUID] = ds.pixel_array
    for path in files:
        original = pydicom.dcmread(path)
        assert original.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
        assert (received[original.SOPInstanceUID] == original.pixel_array).all()


def test_unconvertible_instance_is_reported_not_skipped(
    site: Site, storescp: Callable[..., StoreSCP], tmp_path: Path
) -> None:
    """A JPEG instance with a broken stream cannot be decompressed: its name is in the reason."""
    files = jpeg_series(tmp_path, 2)
    broken = pydicom.dcmread(files[0])
    # An empty basic offset table, then one fragment holding a JPEG stream cut after its start.
    broken.PixelData = (
        b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x04\x00\x00\x00\xff\xd8\xff\xff"
    )
    broken.save_as(files[0], enforce_file_format=True)
    scp = storescp(syntaxes="implicit-only")
    site.configure({"pacs": dicom_target(scp.port, scp.ae_title)}, retry_attempts=1)
    task_id = site.add_task(files, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert f"pacs: refused 1 of 2 instances: {files[0].name}: cannot decompress" in reason
    assert len(scp.files()) == 1


def test_orthanc_stores_every_instance_as_sent(
    site: Site, orthanc: Orthanc, ct_series: GeneratedSeries
) -> None:
    """What Orthanc stored over C-STORE equals what was sent, instance by instance."""
    files = ct_series.paths[:8]
    site.configure({"orthanc": dicom_target(orthanc.dicom_port, orthanc.aet)})
    task_id = site.add_task(files, ["orthanc"])
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


def test_target_down_then_back_gets_everything_once(site: Site, tmp_path: Path) -> None:
    """A target unreachable at first is retried; once up it receives each instance exactly once."""
    series = generate_series(tmp_path / "series", "tiny", 6)
    port = free_port()
    site.configure({"pacs": dicom_target(port, "STORESCP")}, retry_attempts=5)
    task_id = site.add_task(series.paths, ["pacs"])
    scp = StoreSCP(tmp_path / "scp", port=port, extra_args=["-v"])

    def up_after_first_failure() -> bool:
        failed = [e for e in site.events() if e["kind"] == "dispatch.failed"]
        if failed and not scp.running:
            scp.start()
        return site.where(task_id) != Stage.OUTGOING

    try:
        site.dispatch_until(up_after_first_failure)
        assert site.where(task_id) == Stage.SUCCESS
        assert stores_received(scp) == 6
        failed = [e for e in site.events() if e["kind"] == "dispatch.failed"]
        assert failed[0]["message"].startswith("cannot connect to STORESCP@127.0.0.1")
    finally:
        scp.stop()


def test_unknown_host_ends_in_error_with_clear_reason(site: Site, tmp_path: Path) -> None:
    """An unresolvable host name is retried, then the task is in error/ naming the host."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    target = dicom_target(104, "PACS")
    target["host"] = "no-such-host.invalid"
    site.configure({"pacs": target}, retry_attempts=2)
    task_id = site.add_task(series.paths, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert reason.startswith("pacs: cannot connect to PACS@no-such-host.invalid:104")


def test_series_arrives_over_tls_with_verified_certificate(
    site: Site, storescp: Callable[..., StoreSCP], tmp_path: Path
) -> None:
    """storescp with TLS: the target's certificate is verified against the configured CA."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    scp = storescp(extra_args=["+tls", str(key), str(cert), "-ic"])
    series = generate_series(tmp_path / "series", "tiny", 3)
    site.configure(
        {"pacs": dicom_target(scp.port, scp.ae_title, tls={"ca_certificate": str(cert)})}
    )
    task_id = site.add_task(series.paths, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    assert scp.sop_instance_uids() == series.sop_instance_uids


def test_sender_aet_and_address_are_passed_on(site: Site, orthanc: Orthanc, tmp_path: Path) -> None:
    """pass_sender_aet presents the modality's AE title; use_sender_address ignores host."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    target = dicom_target(
        orthanc.dicom_port, orthanc.aet, pass_sender_aet=True, use_sender_address=True
    )
    target["host"] = "192.0.2.1"  # TEST-NET-1: would never answer
    site.configure({"back": target})
    task_id = site.add_task(
        series.paths, ["back"], sender_aet="CT_SCANNER", sender_address="127.0.0.1"
    )
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    instances = orthanc.instances()
    assert len(instances) == 2
    for instance_id in instances:
        remote = orthanc.request("GET", f"/instances/{instance_id}/metadata/RemoteAET")
        assert remote.text == "CT_SCANNER"


def test_peer_aborting_mid_instance_is_named_in_the_reason(site: Site, tmp_path: Path) -> None:
    """storescp aborting while it receives an instance: the reason names the file and UID."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    [instance] = series.instances
    with StoreSCP(tmp_path / "scp", extra_args=["--abort-during"]) as scp:
        site.configure({"pacs": dicom_target(scp.port, scp.ae_title)}, retry_attempts=1)
        task_id = site.add_task(series.paths, ["pacs"])
        site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert f"while sending {instance.path.name}, " in reason
    assert f"SOP Instance UID {instance.sop_instance_uid}" in reason
