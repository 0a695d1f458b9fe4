"""The tags rules see, read from a DICOM file: one definition for every service.

The receiver writes a series' ``tags.json`` with this from its first instance; the router
rebuilds the same mapping when ``tags.json`` is missing, and ``mercure rule-test`` shows it for
a file. Every text-like public element at the top level of the dataset, keyed by DICOM keyword,
multiple values joined by a backslash, numbers as their text. Values are decoded leniently: an
unknown or broken character set gives replacement characters, never a failure.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.multival import MultiValue

TEXT_VRS = frozenset(
    {
        *("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM"),
        *("UC", "UI", "UR", "UT", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"),
    }
)
"""Value representations rules can compare as text (numbers as their text)."""

MAX_VALUE_LENGTH = 4096
"""Longer values are cut."""


def tags_from_dicom(path: Path) -> dict[str, str]:
    """The text-like public top-level elements of a DICOM file, keyed by keyword.

    Raises ``pydicom.errors.InvalidDicomError`` or ``OSError`` for a file that cannot be read.
    """
    with warnings.catch_warnings():
        # Unknown character sets and odd values make pydicom warn; we decode with replacement.
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        tags: dict[str, str] = {}
        for tag in list(dataset.keys()):
            keyword = keyword_for_tag(tag)
            if tag.is_private or not keyword or dictionary_VR(tag) not in TEXT_VRS:
                continue
            try:
                text = _as_text(dataset[tag].value)
            except (ValueError, TypeError, LookupError, UnicodeError):
                raw = getattr(dataset.get_item(tag), "value", b"")
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            tags[keyword] = text.strip("\0 ")[:MAX_VALUE_LENGTH]
    return tags


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_as_text(item) for item in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\0 ")
    return str(value)
