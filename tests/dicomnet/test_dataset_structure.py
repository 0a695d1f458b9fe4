"""The scanner's structure check: malformed and truncated streams are reported, chunk by chunk,
and well-formed datasets (every pydicom test file, every byte layout) never are."""

from __future__ import annotations

import struct
import warnings
from functools import cache
from pathlib import Path

import pydicom
import pytest
from dicomnet_helpers import dataset_bytes, pydicom_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from test_dataset_scanner import SYNTAXES, decoy_dataset, encode

from mercure.dicomnet import DicomFileError, read_file_meta
from mercure.dicomnet.scanner import (
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    DatasetScanner,
    check_dataset,
    new_scanner,
)
from mercure.dicomnet.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
)
from mercure.testing.series import generate_series

pytestmark = pytest.mark.usefixtures("scanner_implementation")

TAGS = (SOP_INSTANCE_UID, SERIES_INSTANCE_UID)
KNOWN_TRUNCATED = {"MR_truncated.dcm", "rtplan_truncated.dcm"}
"""pydicom test files that are cut short on purpose (pydicom reads them lazily)."""


def check_in_chunks(data: bytes, syntax: str, sizes: list[int]) -> DatasetScanner:
    """Feed ``data`` in chunks of ``sizes`` (cycled) with the structure check on."""
    scanner = new_scanner(syntax, TAGS, check_structure=True)
    view = memoryview(data)
    pos = 0
    step = 0
    while pos < len(view) and not scanner.feed(view[pos : pos + sizes[step % len(sizes)]]):
        pos += sizes[step % len(sizes)]
        step += 1
    scanner.finish()
    return scanner


def encode_with_boundaries(ds: Dataset, syntax: str) -> tuple[bytes, set[int]]:
    """The dataset's bytes in ``syntax`` and the offsets between its top-level elements
    (where a cut leaves a shorter but well-formed dataset): the lengths of its prefixes."""
    data = encode(ds, syntax)
    boundaries = {0}
    prefix = Dataset()
    for tag in sorted(ds.keys()):
        prefix.add(ds[tag])
        encoded = encode(prefix, syntax)
        assert data.startswith(encoded)
        boundaries.add(len(encoded))
    return data, boundaries


def header(tag: int, vr: bytes, length: int) -> bytes:
    """An explicit VR little endian element header with a 4-byte length."""
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + b"\0\0" + struct.pack("<I", length)


def small_dataset() -> bytes:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.5"
    return encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)


ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
SEQUENCE = header(0x00081115, b"SQ", 0xFFFFFFFF)
MODALITY = b"\x08\x00\x60\x00CS\x02\x00CT"


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_well_formed_dataset_passes_in_every_chunking(syntax: str) -> None:
    """Decoy sequences of defined and undefined length, fed whole or byte by byte: no error."""
    data = encode(decoy_dataset(), syntax)
    for sizes in ([len(data)], [1], [7, 4096, 3]):
        scanner = check_in_chunks(data, syntax, sizes)
        assert scanner.error is None and scanner.text(SERIES_INSTANCE_UID) == "1.2.3.300"


def test_pixel_data_declared_longer_than_sent_is_reported() -> None:
    """PixelData of 0xFFFFFFF0 bytes of which 100 arrive: the stream ends inside it."""
    data = small_dataset() + header(0x7FE00010, b"OW", 0xFFFFFFF0) + bytes(100)
    scanner = check_in_chunks(data, EXPLICIT_VR_LITTLE_ENDIAN, [16])
    assert scanner.error == (
        "dataset ends inside element (7FE0,0010): 4294967180 bytes of its declared length "
        "are missing"
    )
    assert scanner.text(SERIES_INSTANCE_UID) == "1.2.3.5"


@pytest.mark.parametrize(
    ("tail", "error"),
    [
        (SEQUENCE + ITEM + MODALITY + ITEM_END, "inside a sequence of undefined length"),
        (SEQUENCE + ITEM + MODALITY, "inside an item of undefined length"),
        (SEQUENCE + ITEM + MODALITY + SEQ_END, "sequence delimiter inside an unclosed item"),
        (SEQUENCE + MODALITY, "element (0008,0060) inside sequence (0008,1115) but outside"),
        (SEQUENCE + ITEM + ITEM, "item inside an item of (0008,1115)"),
        (SEQUENCE + ITEM_END, "item delimiter in (0008,1115) outside an item"),
        (ITEM + ITEM_END, "item or delimiter (FFFE,E000) outside a sequence"),
        (b"\x08\x00\x60\x00\x01\x02\x02\x00CT", "has no valid VR"),
        (MODALITY[:5], "dataset ends inside an element header (5 bytes)"),
    ],
)
def test_malformed_structure_is_reported(tail: bytes, error: str) -> None:
    """Unclosed or misplaced items and sequences, a bad VR, a cut header: each named."""
    data = small_dataset() + tail
    for sizes in ([len(data)], [1]):
        scanner = check_in_chunks(data, EXPLICIT_VR_LITTLE_ENDIAN, sizes)
        assert scanner.error is not None and error in scanner.error


def test_truncated_deflate_stream_is_reported() -> None:
    """A deflated dataset missing the end of its deflate stream is reported."""
    data = encode(decoy_dataset(), DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    assert check_dataset(data, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN) is None
    error = check_dataset(data[:-1], DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    assert error is not None and "deflate" in error


def test_scanner_without_the_check_still_stops_at_the_wanted_tags() -> None:
    """Without check_structure nothing changes: done once the wanted tags are found."""
    data = small_dataset() + header(0x7FE00010, b"OW", 0xFFFFFFF0) + bytes(100)
    scanner = new_scanner(EXPLICIT_VR_LITTLE_ENDIAN, TAGS)
    assert scanner.feed(data)
    scanner.finish()
    assert scanner.error is None


def readable_test_files() -> list[Path]:
    usable = []
    for path in pydicom_files():
        try:
            read_file_meta(path)
        except DicomFileError:
            continue
        usable.append(path)
    return usable


@pytest.mark.parametrize("path", readable_test_files(), ids=lambda p: p.name)
def test_pydicom_test_files_pass_unless_cut_short(path: Path) -> None:
    """Every pydicom test file passes the check, except the two it ships truncated."""
    syntax = read_file_meta(path).transfer_syntax_uid
    scanner = check_in_chunks(dataset_bytes(path), syntax, [997])
    if path.name in KNOWN_TRUNCATED:
        assert scanner.error is not None and "dataset ends inside element" in scanner.error
    else:
        assert scanner.error is None


def real_datasets() -> list[tuple[str, Dataset]]:
    """Real datasets re-encodable in every syntax: pydicom's CT and MR, a generated CT, the
    decoy dataset, and an RT plan with nested sequences."""
    from dicomnet_helpers import pydicom_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = [
            (name, pydicom.dcmread(pydicom_file(name)))
            for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
        ]
    return [*found, ("decoy", decoy_dataset())]


REAL = real_datasets()


@cache
def encoded(which: int, syntax: str) -> tuple[bytes, frozenset[int]]:
    """REAL[which] in ``syntax`` with its top-level boundaries (none for deflated)."""
    ds = REAL[which][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            return encode(ds, syntax), frozenset()
        data, boundaries = encode_with_boundaries(ds, syntax)
    return data, frozenset(boundaries)


@pytest.fixture(scope="module")
def generated_ct(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = generate_series(tmp_path_factory.mktemp("ct"), "ct", 1, seed=3).paths[0]
    return pydicom.dcmread(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(REAL) - 1),
    syntax=st.sampled_from(SYNTAXES),
    cut=st.floats(0, 1, exclude_max=True),
    chunk=st.integers(64, 20000),
)
def test_random_truncation_is_always_detected(
    which: int, syntax: str, cut: float, chunk: int
) -> None:
    """A real dataset cut anywhere but between two top-level elements is reported; whole, it
    passes. (A cut between top-level elements leaves a well-formed dataset.) Deflated streams
    are caught at every cut, since the deflate stream does not end."""
    data, boundaries = encoded(which, syntax)
    assert check_in_chunks(data, syntax, [chunk]).error is None
    at = int(cut * len(data))
    scanner = check_in_chunks(data[:at], syntax, [chunk])
    if at in boundaries:
        assert scanner.error is None
    else:
        assert scanner.error is not None, f"cut at {at} of {len(data)} not detected"


def test_every_cut_of_a_generated_ct_is_detected(generated_ct: Dataset) -> None:
    """Exhaustively for the header of a generated CT (and sampled through its pixel data)."""
    data, boundaries = encode_with_boundaries(generated_ct, EXPLICIT_VR_LITTLE_ENDIAN)
    cuts = [*range(0, 4096), *range(4096, len(data), 4093)]
    missed = [
        at
        for at in cuts
        if at not in boundaries and check_dataset(data[:at], EXPLICIT_VR_LITTLE_ENDIAN) is None
    ]
    assert missed == []
