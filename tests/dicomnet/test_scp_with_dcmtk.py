"""The acceptor against DCMTK's senders: every proposal style arrives byte-identical."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from dicomnet_helpers import ServerThread, dataset_bytes, dcmtk_normalised, pydicom_file

from mercure.dicomnet import REJECT_CALLING_AET, AssociationRequest, Rejection, read_file_meta
from mercure.dicomnet.recording import RecordingHandler
from mercure.dicomnet.uids import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, UNCOMPRESSED_TRANSFER_SYNTAXES
from mercure.testing.peers.dcmtk import dcmsend, echoscu, storescu
from mercure.testing.peers.process import PeerError
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.peers

UNCOMPRESSED = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "waveform_ecg.dcm"]

# storescu proposal flag, dcmconv flag that puts the files into that syntax, files.
PROPOSALS = {
    "implicit": ("-xi", "+ti", UNCOMPRESSED),
    "explicit-little": ("-xe", "+te", UNCOMPRESSED),
    "explicit-big": ("-xb", "+tb", UNCOMPRESSED),
    "jpeg-baseline": ("-xy", None, ["SC_rgb_jpeg_dcmtk.dcm", "examples_ybr_color.dcm"]),
    "jpeg-extended": ("-xx", None, ["JPEG-lossy.dcm"]),
    "jpeg-lossless": ("-xs", None, ["SC_rgb_jpeg_gdcm.dcm"]),
    "jpeg2000-lossless": ("-xv", None, ["MR_small_jp2klossless.dcm", "GDCMJ2K_TextGBR.dcm"]),
    "jpeg2000": ("-xw", None, ["JPEG2000.dcm", "693_J2KI.dcm"]),
    "rle": ("-xr", None, ["MR_small_RLE.dcm", "SC_rgb_rle.dcm"]),
}


def send_and_compare(
    server: ServerThread, files: list[Path], *extra: str, propose: str | None = None
) -> None:
    storescu(server.port, *files, called_aet="DICOMNET", propose=propose, extra_args=extra)
    handler = server.handler
    assert isinstance(handler, RecordingHandler)
    received = handler.datasets_by_uid()
    for path in files:
        meta = read_file_meta(path)
        assert received[meta.sop_instance_uid] == dataset_bytes(path), path.name
    syntaxes = {
        i.context.sop_instance_uid: i.context.transfer_syntax_uid for i in handler.instances
    }
    assert {syntaxes[read_file_meta(p).sop_instance_uid] for p in files} == {
        read_file_meta(p).transfer_syntax_uid for p in files
    }


@pytest.mark.parametrize("name", sorted(PROPOSALS))
def test_storescu_proposal_arrives_byte_identical(scp, tmp_path: Path, name: str) -> None:
    """Each storescu proposal style (syntax family) is accepted and streamed byte for byte."""
    flag, conversion, names = PROPOSALS[name]
    files = [dcmtk_normalised(pydicom_file(n), tmp_path / "in", conversion) for n in names]
    send_and_compare(scp(), files, propose=flag)


@pytest.mark.parametrize(
    ("our_max_pdu", "their_max_pdu"), [(4096, 131072), (16384, 4096), (131072, 16384)]
)
def test_max_pdu_sizes_from_4k_to_128k_keep_data_intact(
    scp, tmp_path: Path, our_max_pdu: int, their_max_pdu: int
) -> None:
    """Datasets split into PDUs of 4 KiB to 128 KiB reassemble exactly."""
    files = [
        dcmtk_normalised(pydicom_file(n), tmp_path / "in")
        for n in ("CT_small.dcm", "examples_rgb_color.dcm")
    ]
    server = scp(max_pdu=our_max_pdu)
    send_and_compare(server, files, "--max-pdu", str(their_max_pdu))


def test_deflated_dataset_inflates_to_the_sent_dataset(scp, tmp_path: Path) -> None:
    """A deflated proposal is accepted; the received deflate stream holds the same dataset."""
    source = dcmtk_normalised(pydicom_file("CT_small.dcm"), tmp_path / "in", "+td")
    server = scp()
    storescu(server.port, source, called_aet="DICOMNET", propose="-xd")
    (instance,) = server.handler.instances
    assert instance.context.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)
    assert inflate.decompress(instance.dataset) == zlib.decompressobj(-zlib.MAX_WBITS).decompress(
        dataset_bytes(source)
    )


def test_listener_limited_to_uncompressed_syntaxes_makes_storescu_convert(
    scp, tmp_path: Path
) -> None:
    """With only uncompressed syntaxes accepted, a big-endian proposal still lands uncompressed."""
    files = [dcmtk_normalised(pydicom_file("MR_small.dcm"), tmp_path / "in", "+tb")]
    server = scp(transfer_syntaxes=(UNCOMPRESSED_TRANSFER_SYNTAXES[0],))
    storescu(server.port, *files, called_aet="DICOMNET", propose="-xb")
    (instance,) = server.handler.instances
    assert instance.context.transfer_syntax_uid == UNCOMPRESSED_TRANSFER_SYNTAXES[0]


def test_dcmsend_sends_a_folder_and_reports_every_instance(scp, tmp_path: Path) -> None:
    """dcmsend's per-instance report shows success for each file, and each file arrived."""
    folder = tmp_path / "in"
    files = [
        dcmtk_normalised(pydicom_file(n), folder)
        for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
    ]
    server = scp()
    report = tmp_path / "report.txt"
    dcmsend(server.port, folder, called_aet="DICOMNET", report_file=report)
    assert len(server.handler.instances) == len(files)
    assert report.read_text().count("Success") >= len(files)


def test_echoscu_gets_success_and_the_association_is_released(scp) -> None:
    """C-ECHO from echoscu succeeds; the handler hears of an orderly release."""
    server = scp()
    echoscu(server.port, called_aet="DICOMNET")
    handler = server.handler
    wait_until(lambda: handler.closed, message="association closed")
    assert handler.echoes == 1
    assert handler.closed[0].released and handler.closed[0].echoes == 1


def test_calling_aet_not_allowed_is_rejected_with_that_reason(scp, tmp_path: Path) -> None:
    """A calling AE title off the allow-list gets A-ASSOCIATE-RJ 'calling AE not recognised'."""

    def allow(request: AssociationRequest) -> Rejection | None:
        return None if request.calling_aet == "FRIEND" else REJECT_CALLING_AET

    server = scp(RecordingHandler(accept=allow))
    with pytest.raises(PeerError) as failure:
        storescu(
            server.port, pydicom_file("CT_small.dcm"), calling_aet="STRANGER", called_aet="DICOMNET"
        )
    assert "Calling AE Title Not Recognized" in str(failure.value)
    storescu(server.port, pydicom_file("CT_small.dcm"), calling_aet="FRIEND", called_aet="DICOMNET")
    handler = server.handler
    assert [r.calling_aet for r, _ in handler.rejected] == ["STRANGER"]
    assert len(handler.instances) == 1
