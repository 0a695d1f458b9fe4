"""Assertions about folders of received DICOM files, shared by tests of every service."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from mercure.core.atomic import TEMP_PREFIX


def dicom_files(folder: Path | str, pattern: str = "*.dcm") -> list[Path]:
    """The files matching ``pattern`` below ``folder`` (recursively), sorted, temp names skipped."""
    return sorted(
        path
        for path in Path(folder).rglob(pattern)
        if path.is_file() and not path.name.startswith(".")
    )


def sop_instance_uids_in(folder: Path | str, pattern: str = "*.dcm") -> set[str]:
    """The SOP Instance UIDs of the DICOM files below ``folder``."""
    return {
        str(pydicom.dcmread(path, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        for path in dicom_files(folder, pattern)
    }


def assert_no_partial_files(folder: Path | str, pattern: str = "*.dcm") -> int:
    """Assert that ``folder`` holds no temporary leftovers and only complete DICOM files.

    Complete means: pydicom parses the whole file, and native (uncompressed) pixel data has the
    length its Rows, Columns, samples, frames and bits promise. Returns how many files passed.
    """
    folder = Path(folder)
    leftovers = sorted(p for p in folder.rglob(f"{TEMP_PREFIX}*") if p.is_file())
    assert not leftovers, f"temporary files left in {folder}: {[str(p) for p in leftovers]}"
    files = dicom_files(folder, pattern)
    for path in files:
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
            raise AssertionError(f"{path} is not a complete DICOM file: {exc}") from exc
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if "PixelData" in ds and not (syntax and UID(syntax).is_compressed):
            expected = (
                ds.Rows
                * ds.Columns
                * ds.get("SamplesPerPixel", 1)
                * int(ds.get("NumberOfFrames", 1) or 1)
                * ds.BitsAllocated
                // 8
            )
            actual = len(ds.PixelData)
            assert actual >= expected, f"{path}: pixel data has {actual} bytes, {expected} expected"
    return len(files)
