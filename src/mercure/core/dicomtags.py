"""The tags rules see, read from a DICOM file: one definition for every service.

The receiver writes a series' ``tags.json`` with this from its first instance; the router
rebuilds the same mapping when ``tags.json`` is missing, and ``mercure rule-test`` shows it for
a file. Every text-like public element at the top level of the dataset, keyed by DICOM keyword,
multiple values joined by a backslash, numbers as their text. Values are decoded leniently: an
unknown or broken character set gives replacement characters, never a failure.

pydicom reports such a problem once per element it decodes, both as a Python warning and on its
own logger; here each distinct problem is logged once per call, naming the series, and callers
call this once per series.
"""

from __future__ import annotations

import contextvars
import json
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

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

JOURNAL_TAGS = {
    "SenderAET": "Calling AE title of the sender",
    "ReceiverAET": "Called AE title (the listener that received the series)",
    "SenderAddress": "IP address of the sender",
}
"""What the receiver adds to a series' tags besides the DICOM elements: how it arrived."""

TAGS_FILE = "tags.json"
"""A series' tags in ``incoming/<series>/``, written by the receiver (docs/data-folder.md)."""

log = logging.getLogger(__name__)

_quiet = contextvars.ContextVar("quiet_pydicom", default=False)


class _QuietWhileReadingTags(logging.Filter):
    """Drops pydicom's log records while :func:`tags_from_dicom` runs in this context: they
    repeat its warnings, which are collected and logged once there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _quiet.get()


logging.getLogger("pydicom").addFilter(_QuietWhileReadingTags())


def tags_from_dicom(
    path: Path | BinaryIO, *, name: str = "", additional: Iterable[str] = ()
) -> dict[str, str]:
    """The text-like public top-level elements of a DICOM file, keyed by keyword.

    ``path`` may be an open binary file (an upload that is never stored); ``name`` then names
    it in log lines. Only the header is read (``stop_before_pixels``). ``additional`` names
    further tags to read, private ones included (``router.additional_tags``, see
    :mod:`mercure.core.mercuretags`), each ``''`` when absent. Raises
    ``pydicom.errors.InvalidDicomError`` or ``OSError`` for a file that cannot be read.
    """
    label = name or (path.name if isinstance(path, Path) else "upload")
    token = _quiet.set(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Unknown character sets and odd values make pydicom warn; we decode with replacement.
            warnings.simplefilter("always")
            tags = _read_tags(path, tuple(additional))
    finally:
        _quiet.reset(token)
    if caught:
        _report(label, tags.get("SeriesInstanceUID", "?"), [str(w.message) for w in caught])
    return tags


def normalise_tags(document: Mapping[str, object]) -> dict[str, str]:
    """Tag values as text: lists joined with a backslash, numbers written out, null dropped."""
    tags: dict[str, str] = {}
    for key, value in document.items():
        if not isinstance(key, str) or value is None:
            continue
        if isinstance(value, str):
            tags[key] = value
        elif isinstance(value, list | tuple):
            tags[key] = "\\".join("" if item is None else str(item) for item in value)
        else:
            tags[key] = str(value)
    return tags


def read_tags_file(path: Path) -> dict[str, str] | None:
    """The tags in a ``tags.json``; None if it is missing or not a JSON object."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s is not valid JSON; the tags are rebuilt from the instances", path)
        return None
    return normalise_tags(document) if isinstance(document, dict) else None


def _report(name: str, series_uid: str, messages: list[str]) -> None:
    """Log each distinct problem once. Character set names are safe to show; other messages
    may quote a value (a birth date, a name), so only their count is shown above debug."""
    others = 0
    for message in dict.fromkeys(messages):
        if message.startswith("Unknown encoding"):
            log.warning(
                "series %s (%s): %s; values read leniently", series_uid, name, message[:200]
            )
        else:
            others += 1
            log.debug("series %s (%s): %s", series_uid, name, message)
    if others:
        log.warning(
            "series %s (%s): %d value problem(s) reading its tags (details at debug level)",
            series_uid,
            name,
            others,
        )


def _read_tags(path: Path | BinaryIO, additional: tuple[str, ...]) -> dict[str, str]:
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    if additional:
        # Here, not at the top: mercuretags uses this module's limits.
        from mercure.core.mercuretags import additional_tag_values

        extra = additional_tag_values(dataset, additional)
    else:
        extra = {}
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
    for key, value in extra.items():
        if value or key not in tags:
            tags[key] = value
    return tags


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_as_text(item) for item in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\0 ")
    return str(value)
