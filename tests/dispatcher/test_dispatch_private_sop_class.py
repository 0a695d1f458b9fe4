"""The dicom target forwards a private SOP class as received: to storescp in promiscuous mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from dispatch_site import Site

from mercure.core.datafolder import Stage
from mercure.dicomnet.filemeta import build_file_meta, read_file_meta
from mercure.testing.peers import StoreSCP
from mercure.testing.receiver import dataset_bytes
from mercure.testing.series import generate_series

pytestmark = pytest.mark.peers

SIEMENS_CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"


def received_files(folder: Path, count: int) -> list[Path]:
    """Private-class instances exactly as the receiver writes them: its File Meta, then the
    dataset bytes as sent, named by SOP Instance UID."""
    series = generate_series(
        folder / "sent", kind="tiny", count=count, tags={"SOPClassUID": SIEMENS_CSA_NON_IMAGE}
    )
    out = folder / "incoming"
    out.mkdir()
    files = []
    for instance in series.instances:
        meta = read_file_meta(instance.path)
        path = out / f"{instance.sop_instance_uid}.dcm"
        path.write_bytes(
            build_file_meta(
                SIEMENS_CSA_NON_IMAGE, instance.sop_instance_uid, meta.transfer_syntax_uid, "CT01"
            )
            + dataset_bytes(instance.path)
        )
        files.append(path)
    return files


def test_private_class_reaches_promiscuous_storescp_byte_identical(
    site: Site, storescp: Callable[..., StoreSCP], tmp_path: Path
) -> None:
    """storescp --promiscuous accepts the file's private class; the dataset arrives unchanged."""
    files = received_files(tmp_path, 3)
    scp = storescp(bit_preserving=True, extra_args=["--promiscuous"])
    site.configure(
        {
            "pacs": {
                "type": "dicom",
                "host": "127.0.0.1",
                "port": scp.port,
                "aet_target": scp.ae_title,
            }
        }
    )
    task_id = site.add_task(files, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    sent = {read_file_meta(path).sop_instance_uid: dataset_bytes(path) for path in files}
    arrived = {}
    for path in scp.wait_for_files(3):
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        assert meta.MediaStorageSOPClassUID == SIEMENS_CSA_NON_IMAGE
        arrived[meta.MediaStorageSOPInstanceUID] = dataset_bytes(path)
    assert arrived == sent


def test_target_refusing_the_private_class_fails_with_the_reason(
    site: Site, storescp: Callable[..., StoreSCP], tmp_path: Path
) -> None:
    """A storescp without --promiscuous refuses the class: the task fails naming it."""
    files = received_files(tmp_path, 1)
    scp = storescp()
    site.configure(
        {
            "pacs": {
                "type": "dicom",
                "host": "127.0.0.1",
                "port": scp.port,
                "aet_target": scp.ae_title,
            }
        },
        retry_attempts=1,
    )
    task_id = site.add_task(files, ["pacs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert f"the target accepted SOP class {SIEMENS_CSA_NON_IMAGE} neither" in reason
    assert scp.files() == []
