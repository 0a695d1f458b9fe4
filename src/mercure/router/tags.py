"""The tags rules see: a series' ``tags.json``, or the same built from a DICOM file.

``tags.json`` is written once by the receiver from the first instance (docs/data-folder.md).
The files are the truth, so when it is missing or unreadable the router builds the same
mapping from the first readable instance: every text-like element at the top level of the
dataset, keyed by DICOM keyword, multiple values joined by a backslash, plus ``SenderAET``,
``ReceiverAET`` and ``SenderAddress`` from the journal. ``mercure rule-test`` uses the same
function for a DICOM file.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

TAGS_FILE = "tags.json"

TEXT_VRS = frozenset(
    {
        *("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM"),
        *("UC", "UI", "UR", "UT", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"),
    }
)
"""Value representations rules can compare as text (numbers as their text), as the receiver."""
MAX_VALUE_LENGTH = 4096
"""Longer values are cut, as the receiver does."""

log = logging.getLogger(__name__)


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


def tags_from_dicom(path: Path) -> dict[str, str]:
    """The text-like public top-level elements of a DICOM file, keyed by keyword.

    Values are decoded leniently (an odd character set gives replacement characters, never a
    failure). Raises ``InvalidDicomError`` or ``OSError`` for a file that cannot be read.
    """
    with warnings.catch_warnings():
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


def tags_from_instances(files: Iterable[Path]) -> dict[str, str] | None:
    """Tags from the first of ``files`` that is a readable DICOM file; None if none is."""
    for path in files:
        try:
            return tags_from_dicom(path)
        except (InvalidDicomError, OSError, ValueError) as exc:
            log.warning("cannot read tags from %s: %s", path, exc)
    return None


def series_tags(
    folder: Path,
    dicom_files: Iterable[Path],
    *,
    sender_aet: str | None = None,
    receiver_aet: str | None = None,
    sender_address: str | None = None,
) -> dict[str, str]:
    """The tags of the series in ``folder``: its ``tags.json``, else rebuilt from an instance.

    An empty mapping if neither works (every rule that reads a tag is then false).
    """
    tags = read_tags_file(folder / TAGS_FILE)
    if tags is None:
        tags = tags_from_instances(dicom_files) or {}
        for key, value in (
            ("SenderAET", sender_aet),
            ("ReceiverAET", receiver_aet),
            ("SenderAddress", sender_address),
        ):
            if value and key not in tags:
                tags[key] = value
    return tags
