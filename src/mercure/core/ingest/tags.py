"""The series' tags file: :mod:`mercure.core.dicomtags` of its first instance plus the sender.

It is written once per series, so a full pydicom parse is affordable here (it is never done per
instance).
"""

from __future__ import annotations

from pathlib import Path

from mercure.core.dicomtags import tags_from_dicom


def series_tags(path: Path, sender: dict[str, str]) -> dict[str, str]:
    """Tags of the instance at ``path``, plus ``SenderAET``, ``ReceiverAET``, ``SenderAddress``."""
    tags = tags_from_dicom(path)
    tags.update(sender)
    return tags
