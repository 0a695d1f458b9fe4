"""The tags rules see: a series' ``tags.json``, or the same built from a DICOM file.

``tags.json`` is written once by the receiver from the first instance (docs/data-folder.md).
The files are the truth, so when it is missing or unreadable the router builds the same
mapping from the first readable instance: every text-like element at the top level of the
dataset, keyed by DICOM keyword, multiple values joined by a backslash, plus ``SenderAET``,
``ReceiverAET`` and ``SenderAddress`` from the journal (:mod:`mercure.core.dicomtags`, which
the receiver uses too). ``mercure rule-test`` uses the same function for a DICOM file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from pydicom.errors import InvalidDicomError

from mercure.core.dicomtags import TAGS_FILE, read_tags_file, tags_from_dicom

log = logging.getLogger(__name__)


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
