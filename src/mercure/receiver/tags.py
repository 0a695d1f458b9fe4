"""The series' tags file: every text-like element of its first instance, decoded to UTF-8.

Rules see these tags. It is written once per series, so a full pydicom parse is affordable here
(it is never done per instance). A bad or unknown character set never fails the series: the
values are decoded with replacement characters instead.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

log = logging.getLogger(__name__)

TEXT_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
        "US",
        "SS",
        "UL",
        "SL",
        "FL",
        "FD",
        "UV",
        "SV",
    }
)
"""Value representations whose values rules can compare as text (numbers as their text)."""

MAX_VALUE_LENGTH = 4096


def series_tags(path: Path, sender: dict[str, str]) -> dict[str, str]:
    """Tags of the instance at ``path``, plus ``SenderAET``, ``ReceiverAET``, ``SenderAddress``."""
    with warnings.catch_warnings():
        # Unknown character sets and odd values make pydicom warn; we decode with replacement.
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        tags = _text_elements(dataset)
    tags.update(sender)
    return tags


def _text_elements(dataset: Dataset) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in list(dataset.keys()):
        if tag.is_private or not (keyword := keyword_for_tag(tag)):
            continue
        if dictionary_VR(tag) not in TEXT_VRS:
            continue
        try:
            text = _as_text(dataset[tag].value)
        except Exception as exc:
            log.debug("element %s not decodable: %s", keyword, exc)
            value = getattr(dataset.get_item(tag), "value", b"")
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else ""
        tags[keyword] = text.strip("\0 ")[:MAX_VALUE_LENGTH]
    return tags


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_as_text(item) for item in value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\0 ")
    return str(value)
