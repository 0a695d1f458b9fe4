"""Tests of the Orthanc peer: start, receive by DICOM and REST, send on, reset."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pydicom
import pytest

from mercure.testing.peers import Orthanc, StoreSCP, storescu
from mercure.testing.series import GeneratedSeries

pytestmark = pytest.mark.peers


def test_orthanc_lists_instances_received_by_c_store(
    orthanc: Orthanc, tiny_series: GeneratedSeries
) -> None:
    """Instances sent by storescu to Orthanc's DICOM port are listed over its REST API."""
    storescu(orthanc.dicom_port, tiny_series.folder, called_aet=orthanc.aet)
    assert len(orthanc.instances()) == len(tiny_series)
    assert orthanc.statistics()["CountInstances"] == len(tiny_series)
    assert orthanc.sop_instance_uids() == tiny_series.sop_instance_uids


def test_orthanc_returns_an_uploaded_file_unchanged(
    orthanc: Orthanc, tiny_series: GeneratedSeries
) -> None:
    """A REST upload is stored and its file comes back byte for byte."""
    (instance_id,) = orthanc.upload(tiny_series.paths[:1])
    assert orthanc.instance_file(instance_id) == tiny_series.paths[0].read_bytes()
    assert orthanc.instance_tags(instance_id)["SeriesInstanceUID"] == tiny_series.series_uid


def test_orthanc_serves_dicomweb(orthanc: Orthanc, tiny_series: GeneratedSeries) -> None:
    """The DICOMweb plugin answers QIDO-RS for a stored study."""
    orthanc.upload(tiny_series.paths[:2])
    answer = httpx.get(f"{orthanc.dicomweb_url}/studies", timeout=10).json()
    assert [study["0020000D"]["Value"][0] for study in answer] == [tiny_series.study_uid]


def test_orthanc_sends_to_a_modality_set_at_run_time(
    orthanc: Orthanc, storescp: Callable[..., StoreSCP], tiny_series: GeneratedSeries
) -> None:
    """store_to_modality delivers to a receiver registered with set_modality."""
    ids = orthanc.upload(tiny_series.paths[:3])
    scp = storescp(ae_title="TARGET")
    orthanc.set_modality("target", ("TARGET", "127.0.0.1", scp.port))
    answer = orthanc.store_to_modality("target", ids)
    assert answer["InstancesCount"] == 3
    assert answer["FailedInstancesCount"] == 0
    assert scp.sop_instance_uids() == {
        pydicom.dcmread(p).SOPInstanceUID for p in tiny_series.paths[:3]
    }


def test_reset_empties_orthanc_and_restores_modalities(
    orthanc_factory: Callable[..., Orthanc], tiny_series: GeneratedSeries
) -> None:
    """After reset no instance and only the modalities given at start remain."""
    server = orthanc_factory(modalities={"mercure": ("MERCURE", "127.0.0.1", 11112)})
    server.upload(tiny_series.paths[:2])
    server.set_modality("extra", ("EXTRA", "127.0.0.1", 104))
    server.reset()
    assert server.instances() == []
    assert server.modalities() == ["mercure"]


def test_orthanc_with_restricted_syntaxes_refuses_others(
    orthanc_factory: Callable[..., Orthanc], make_series: Callable[..., GeneratedSeries]
) -> None:
    """Config overrides reach Orthanc: accepting only implicit VR makes an RLE send fail."""
    server = orthanc_factory(config={"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2"]})
    rle = make_series(count=1, transfer_syntax="rle")
    assert storescu(server.dicom_port, rle.folder, check=False).returncode != 0
    assert server.instances() == []
