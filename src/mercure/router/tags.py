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
from mercure.core.mercuretags import parse_additional_tag

log = logging.getLogger(__name__)


def tags_from_instances(
    files: Iterable[Path], additional: Iterable[str] = ()
) -> dict[str, str] | None:
    """Tags from the first of ``files`` that is a readable DICOM file; None if none is."""
    for path in files:
        try:
            return tags_from_dicom(path, additional=additional)
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
    additional_tags: Iterable[str] = (),
) -> dict[str, str]:
    """The tags of the series in ``folder``: its ``tags.json``, else rebuilt from an instance.

    ``additional_tags`` (the keys of ``router.additional_tags``) that ``tags.json`` lacks
    are read from the first readable instance. An empty mapping if nothing can be read (rules
    then see mercure's standard tags as '', see :class:`mercure.core.rules.SeriesTags`).
    """
    additional = tuple(additional_tags)
    files = list(dicom_files)
    tags = read_tags_file(folder / TAGS_FILE)
    if tags is not None and additional:
        wanted = {parse_additional_tag(name)[1] for name in additional}
        if not wanted <= tags.keys():
            extra = tags_from_instances(files, additional) or {}
            for key in wanted - tags.keys():
                if key in extra:
                    tags[key] = extra[key]
    if tags is None:
        tags = tags_from_instances(files, additional) or {}
        for key, value in (
            ("SenderAET", sender_aet),
            ("ReceiverAET", receiver_aet),
            ("SenderAddress", sender_address),
        ):
            if value and key not in tags:
                tags[key] = value
    return tags
