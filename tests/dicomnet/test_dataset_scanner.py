"""The incremental scanner finds top-level UIDs chunk by chunk, in every byte layout."""

from __future__ import annotations

import random
import warnings
import zlib
from pathlib import Path

import pydicom
import pytest
from dicomnet_helpers import dataset_bytes, pydicom_file, pydicom_files
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from mercure.dicomnet import DicomFileError, read_file_meta
from mercure.dicomnet.scanner import (
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    DatasetScanner,
    new_scanner,
    scan_dataset,
)
from mercure.dicomnet.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

pytestmark = pytest.mark.usefixtures("scanner_implementation")

SYNTAXES = [
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
]
TAGS = (SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)


def encode(ds: Dataset, syntax: str) -> bytes:
    """The dataset's bytes as sent in ``syntax`` (deflated: raw deflate of explicit VR LE)."""
    fp = DicomBytesIO()
    fp.is_little_endian = syntax != EXPLICIT_VR_BIG_ENDIAN
    fp.is_implicit_VR = syntax == IMPLICIT_VR_LITTLE_ENDIAN
    write_dataset(fp, ds)
    data = fp.getvalue()
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = deflater.compress(data) + deflater.flush()
    return data


def decoy_dataset() -> Dataset:
    """A dataset that hides its UIDs behind 10 KB of private data and nested sequences whose
    items carry *other* Series/Study UIDs, in undefined and defined length."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.100"
    ds.add_new(0x00091010, "OB", random.Random(1).randbytes(10000))  # incompressible
    inner = Dataset()
    inner.SeriesInstanceUID = "9.9.9.1"
    inner.ReferencedImageSequence = Sequence([Dataset()])
    inner.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "9.9.9.2"
    inner.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    inner["ReferencedImageSequence"].is_undefined_length = True
    inner.is_undefined_length_sequence_item = True
    ds.ReferencedSeriesSequence = Sequence([inner])
    ds["ReferencedSeriesSequence"].is_undefined_length = True
    other = Dataset()
    other.StudyInstanceUID = "9.9.9.3"
    ds.ReferencedStudySequence = Sequence([other])
    ds.StudyInstanceUID = "1.2.3.200"
    ds.SeriesInstanceUID = "1.2.3.300"
    ds.PixelData = bytes(64)
    ds["PixelData"].VR = "OB"
    return ds


EXPECTED = {
    SOP_INSTANCE_UID: "1.2.3.100",
    STUDY_INSTANCE_UID: "1.2.3.200",
    SERIES_INSTANCE_UID: "1.2.3.300",
}


def scan_in_chunks(data: bytes, syntax: str, sizes: list[int]) -> DatasetScanner:
    scanner = new_scanner(syntax, TAGS)
    view = memoryview(data)
    pos = 0
    for size in sizes:
        if pos >= len(view) or scanner.feed(view[pos : pos + size]):
            break
        pos += size
    else:
        while pos < len(view) and not scanner.feed(view[pos : pos + 4096]):
            pos += 4096
    scanner.finish()
    return scanner


def found(scanner: DatasetScanner) -> dict[int, str | None]:
    return {tag: scanner.text(tag) for tag in TAGS}


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_top_level_uids_found_past_decoys_beyond_the_first_4k_fragment(syntax: str) -> None:
    """UIDs after 10 KB of private data and decoy sequences are found, fed 4 KiB at a time."""
    data = encode(decoy_dataset(), syntax)
    scanner = new_scanner(syntax, TAGS)
    view = memoryview(data)
    assert not scanner.feed(view[:4096])
    assert found(scan_in_chunks(data, syntax, [4096] * 10)) == EXPECTED


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_one_byte_chunks_give_the_same_answer(syntax: str) -> None:
    """Element headers and values split anywhere (here: every byte) are reassembled."""
    data = encode(decoy_dataset(), syntax)
    scanner = scan_in_chunks(data, syntax, [1] * len(data))
    assert found(scanner) == EXPECTED and scanner.error is None


@settings(max_examples=200, deadline=None)
@given(
    syntax=st.sampled_from(SYNTAXES), sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=40)
)
def test_any_chunking_gives_the_same_answer(syntax: str, sizes: list[int]) -> None:
    """Random chunk boundaries never change what is found."""
    data = encode(decoy_dataset(), syntax)
    assert found(scan_in_chunks(data, syntax, sizes)) == EXPECTED


def test_scanning_stops_before_pixel_data() -> None:
    """Once past the wanted tags the scanner is done; pixel data is never walked."""
    path = pydicom_file("CT_small.dcm")
    data = dataset_bytes(path)
    pixel_offset = data.index(b"\xe0\x7f\x10\x00")
    scanner = new_scanner(EXPLICIT_VR_LITTLE_ENDIAN)
    assert scanner.feed(memoryview(data)[:pixel_offset])
    assert scanner.text(SERIES_INSTANCE_UID) == pydicom.dcmread(path).SeriesInstanceUID


def test_dataset_without_the_tag_reports_none() -> None:
    """A dataset lacking SeriesInstanceUID scans to None without error."""
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3"
    ds.Modality = "OT"
    scanner = new_scanner(EXPLICIT_VR_LITTLE_ENDIAN)
    scanner.feed(encode(ds, EXPLICIT_VR_LITTLE_ENDIAN))
    scanner.finish()
    assert scanner.text(SERIES_INSTANCE_UID) is None and scanner.error is None


def test_truncated_dataset_reports_an_error_on_finish() -> None:
    """A stream ending inside an element sets ``error`` instead of raising."""
    data = encode(decoy_dataset(), EXPLICIT_VR_LITTLE_ENDIAN)
    scanner = new_scanner(EXPLICIT_VR_LITTLE_ENDIAN)
    scanner.feed(data[:5000])
    scanner.finish()
    assert scanner.done and scanner.error and scanner.text(SERIES_INSTANCE_UID) is None


def pydicom_datasets() -> list[Path]:
    usable = []
    for path in pydicom_files():
        try:
            read_file_meta(path)
        except DicomFileError:
            continue
        usable.append(path)
    return usable


@pytest.mark.parametrize("path", pydicom_datasets(), ids=lambda p: p.name)
def test_agrees_with_pydicom_on_its_test_files(path: Path) -> None:
    """For every pydicom test file: the same SOP/Study/Series Instance UIDs as pydicom reads."""
    meta = read_file_meta(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom complains about its deliberately odd files
        ds = pydicom.dcmread(path, force=True)
        expected = {
            SOP_INSTANCE_UID: ds.get("SOPInstanceUID"),
            STUDY_INSTANCE_UID: ds.get("StudyInstanceUID"),
        }
        expected[SERIES_INSTANCE_UID] = ds.get("SeriesInstanceUID")
    scanner = scan_in_chunks(dataset_bytes(path), meta.transfer_syntax_uid, [997] * 1000)
    assert found(scanner) == {tag: (str(v) if v else None) for tag, v in expected.items()}


@settings(max_examples=300, deadline=None)
@given(syntax=st.sampled_from(SYNTAXES), noise=st.binary(max_size=2000), chunk=st.integers(1, 512))
def test_garbage_never_raises(syntax: str, noise: bytes, chunk: int) -> None:
    """Random bytes end in done/error, never in an exception."""
    scanner = new_scanner(syntax, TAGS, limit=100_000)
    for start in range(0, len(noise), chunk):
        if scanner.feed(noise[start : start + chunk]):
            break
    scanner.finish()
    assert scanner.done


def test_one_shot_helper_matches() -> None:
    """scan_dataset is the scanner in one call."""
    data = encode(decoy_dataset(), IMPLICIT_VR_LITTLE_ENDIAN)
    assert scan_dataset(data, IMPLICIT_VR_LITTLE_ENDIAN, TAGS) == {
        t: v.encode() + b"\0" for t, v in EXPECTED.items()
    }
