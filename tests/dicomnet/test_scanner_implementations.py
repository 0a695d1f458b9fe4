"""The compiled dataset scanner and the Python one report the same for any stream, fed in any
chunks: the same answers to every ``feed``, the same values, the same error text."""

from __future__ import annotations

import struct
import warnings

import pytest
from dicomnet_helpers import dataset_bytes, pydicom_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercure.dicomnet import DicomFileError, read_file_meta, scanner
from mercure.dicomnet.scanner import (
    SERIES_INSTANCE_UID,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    DatasetScanner,
    PythonScanner,
    new_scanner,
)
from mercure.dicomnet.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

SYNTAXES = [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN]
WANTED = (SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)
TAGS = [0x00020010, *WANTED, 0x00080060, 0x00081115, 0x00090010, 0x7FE00010, 0x00100010]
VRS = [b"UI", b"CS", b"SQ", b"OB", b"UN", b"OW", b"LO", b"UT", b"\x00\x01", b"zz"]


def compiled(syntax: str, tags: tuple[int, ...], limit: int, check: bool) -> DatasetScanner:
    assert scanner.CompiledScanner is not None, "the compiled scanner is not built"
    made = new_scanner(syntax, tags, limit, check_structure=check)
    assert isinstance(made, scanner.CompiledScanner)
    return made


def element(syntax: str, tag: int, vr: bytes, value: bytes, undefined: bool) -> bytes:
    """One element header (and its value) as ``syntax`` writes it, possibly of undefined length."""
    big = syntax == EXPLICIT_VR_BIG_ENDIAN
    order = ">" if big else "<"
    head = struct.pack(f"{order}HH", tag >> 16, tag & 0xFFFF)
    length = 0xFFFFFFFF if undefined else len(value)
    if tag >> 16 == 0xFFFE or syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return head + struct.pack(f"{order}I", length) + value
    if vr in (b"SQ", b"OB", b"UN", b"OW", b"UT") or undefined:
        return head + vr + b"\0\0" + struct.pack(f"{order}I", length) + value
    return head + vr + struct.pack(f"{order}H", len(value) & 0xFFFF) + value


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, bytes]:
    """Almost-DICOM: elements of the wanted and other tags, items, delimiters, sequences of
    undefined length, bad VRs and plain noise, in one of the three syntaxes."""
    syntax = draw(st.sampled_from(SYNTAXES))
    parts = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 9))
        if kind <= 5:
            tag = draw(st.sampled_from(TAGS))
            value = draw(st.sampled_from([b"1.2.3\0", b"1.2.840.5 ", b"", b"\x81\xfe", b"CT"]))
            value = value * draw(st.integers(1, 3))
            parts.append(element(syntax, tag, draw(st.sampled_from(VRS)), value, kind == 5))
        elif kind <= 8:
            item = draw(st.sampled_from([0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD, 0xFFFE1234]))
            undefined = draw(st.booleans())
            parts.append(element(syntax, item, b"", b"" if undefined else b"\0" * 4, undefined))
        else:
            parts.append(draw(st.binary(max_size=24)))
    return syntax, b"".join(parts)


def run(made: DatasetScanner, data: bytes, sizes: list[int]) -> tuple[object, ...]:
    """Feed ``data`` in chunks of ``sizes`` (cycled); everything the scanner reported."""
    answers = []
    view = memoryview(data)
    pos = step = 0
    while pos < len(view):
        size = sizes[step % len(sizes)]
        answers.append(made.feed(view[pos : pos + size]))
        pos += size
        step += 1
    made.finish()
    texts = {tag: made.text(tag) for tag in WANTED}
    return answers, made.done, made.error, dict(made.values), texts


def test_the_compiled_scanner_is_built_and_chosen() -> None:
    """After scripts/install.sh the compiled scanner exists and new_scanner gives it, except
    for a deflated syntax, which the Python one inflates."""
    assert scanner.CompiledScanner is not None, "run scripts/install.sh (needs a C compiler)"
    assert isinstance(new_scanner(EXPLICIT_VR_LITTLE_ENDIAN), scanner.CompiledScanner)
    assert isinstance(new_scanner(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN), PythonScanner)
    with pytest.raises(ValueError, match="at least one tag"):
        new_scanner(EXPLICIT_VR_LITTLE_ENDIAN, ())
    made = new_scanner(EXPLICIT_VR_LITTLE_ENDIAN, (SOP_INSTANCE_UID,))
    made.values[SOP_INSTANCE_UID] = "not bytes"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="not bytes"):
        made.text(SOP_INSTANCE_UID)
    unready = scanner.CompiledScanner.__new__(scanner.CompiledScanner)
    with pytest.raises(RuntimeError, match="__init__ was not called"):
        unready.feed(b"\x08\x00")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams(),
    check=st.booleans(),
    tags=st.lists(st.sampled_from(TAGS), min_size=1, max_size=4),
    limit=st.sampled_from([10, 100, 1 << 20]),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8),
)
def test_both_scanners_report_the_same_for_any_stream(
    stream: tuple[str, bytes], check: bool, tags: list[int], limit: int, sizes: list[int]
) -> None:
    """Structured noise in any chunking: every answer, value, error and text is the same."""
    syntax, data = stream
    reference = PythonScanner(syntax, tags, limit, check_structure=check)
    fast = compiled(syntax, tuple(tags), limit, check)
    assert run(fast, data, sizes) == run(reference, data, sizes)


def readable_test_files() -> list[tuple[str, bytes]]:
    files = []
    for path in pydicom_files():
        try:
            syntax = read_file_meta(path).transfer_syntax_uid
        except DicomFileError:
            continue
        if syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                files.append((syntax, dataset_bytes(path)))
    return files


FILES = readable_test_files()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(FILES) - 1),
    cut=st.floats(0, 1),
    chunk=st.integers(1, 20000),
    check=st.booleans(),
)
def test_both_scanners_agree_on_pydicom_files_cut_anywhere(
    which: int, cut: float, chunk: int, check: bool
) -> None:
    """Every pydicom test file, whole or cut at any point, fed in any chunk size."""
    syntax, data = FILES[which]
    data = data[: int(cut * len(data))]
    reference = PythonScanner(syntax, WANTED, check_structure=check)
    fast = compiled(syntax, WANTED, 64 << 20, check)
    assert run(fast, data, [chunk]) == run(reference, data, [chunk])
