"""File Meta Information: built for received datasets, read from files to send."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicomnet_helpers import dataset_bytes, pydicom_file, pydicom_files

from mercure.dicomnet import DicomFileError, build_file_meta, read_file_meta
from mercure.dicomnet.uids import IMPLEMENTATION_CLASS_UID


def test_built_meta_plus_received_dataset_is_a_valid_part10_file(tmp_path: Path) -> None:
    """pydicom reads our File Meta and the dataset after it, unchanged."""
    source = pydicom_file("CT_small.dcm")
    original = pydicom.dcmread(source)
    target = tmp_path / "out.dcm"
    meta = build_file_meta(
        original.SOPClassUID, original.SOPInstanceUID, "1.2.840.10008.1.2.1", "MODALITY1"
    )
    target.write_bytes(meta + dataset_bytes(source))
    written = pydicom.dcmread(target)
    assert written.file_meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert written.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert written.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert written.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert written.file_meta.SourceApplicationEntityTitle == "MODALITY1"
    assert written.file_meta.FileMetaInformationGroupLength == len(meta) - 132 - 12
    assert written.PixelData == original.PixelData
    assert read_file_meta(target).dataset_offset == len(meta)


def test_odd_length_uids_are_padded_with_nul() -> None:
    """UIDs of odd length get a trailing NUL so every element has even length."""
    meta = build_file_meta("1.2.3", "1.2.345", "1.2.840.10008.1.2")
    assert b"1.2.3\x00" in meta and b"1.2.345\x00" in meta
    assert (len(meta) - 132) % 2 == 0


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on its deliberately odd files
@pytest.mark.parametrize(
    "path", [p for p in pydicom_files() if p.suffix == ".dcm"], ids=lambda p: p.name
)
def test_read_meta_agrees_with_pydicom(path: Path) -> None:
    """SOP class/instance, transfer syntax and dataset offset match pydicom's reading."""
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    try:
        meta = read_file_meta(path)
    except DicomFileError:
        keywords = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
        assert not all(ds.file_meta.get(k) for k in keywords), "pydicom found a complete File Meta"
        return
    assert meta.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert meta.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
    group_length = ds.file_meta.get("FileMetaInformationGroupLength")
    if group_length is not None and path.read_bytes()[128:132] == b"DICM":
        assert meta.dataset_offset == 132 + 12 + group_length


def test_file_without_meta_is_refused(tmp_path: Path) -> None:
    """A bare dataset (no preamble, no group 0002) cannot be sent as a Part 10 file."""
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(dataset_bytes(pydicom_file("CT_small.dcm")))
    with pytest.raises(DicomFileError, match="no File Meta"):
        read_file_meta(bare)


def test_missing_file_is_a_dicom_file_error(tmp_path: Path) -> None:
    """A missing file raises DicomFileError naming it."""
    with pytest.raises(DicomFileError, match=r"nothing\.dcm"):
        read_file_meta(tmp_path / "nothing.dcm")
