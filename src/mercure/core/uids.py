"""DICOM UIDs as the standard defines them: their syntax (PS3.5 9.1) and what its registry names.

Shared by the configuration (which checks the UIDs an administrator writes) and the DICOM upper
layer (which decides what a listener accepts); the registry is pydicom's UID dictionary.
"""

from __future__ import annotations

import re
from functools import cache

from pydicom.uid import AllTransferSyntaxes, UID_dictionary

MAX_UID_LENGTH = 64
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

NEWER_STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.100.1": "Waveform Presentation State Storage",
    "1.2.840.10008.5.1.4.1.1.9.100.2": "Waveform Acquisition Presentation State Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.8": "Height Map Segmentation Storage",
}
"""Standard storage SOP classes newer than pydicom's UID dictionary (PS3.4 B.5, 2024-2025)."""

_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_COMPONENT_DIGITS = re.compile(r"[0-9]+")


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a UID: components of digits joined by dots, at most 64 characters,
    no component with a leading zero except ``0`` itself."""
    return len(value) <= MAX_UID_LENGTH and _UID.fullmatch(value) is not None


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a valid UID, in words for an administrator; None when it is one."""
    if is_valid_uid(value):
        return None
    if not value:
        return "not a valid UID: it is empty"
    if len(value) > MAX_UID_LENGTH:
        return f"not a valid UID: {len(value)} characters, at most {MAX_UID_LENGTH} are allowed"
    for component in value.split("."):
        if not component:
            return "not a valid UID: empty component (a leading, trailing or doubled dot)"
        if _COMPONENT_DIGITS.fullmatch(component) is None:
            return f"not a valid UID: component {component!r} is not made of the digits 0-9"
        if component.startswith("0"):
            return f"not a valid UID: component {component!r} has a leading zero"
    return "not a valid UID"  # pragma: no cover - every case is named above


def uid_name(uid: str) -> str:
    """The standard's name of ``uid``, or ``""`` for a UID it does not define."""
    entry = UID_dictionary.get(uid)
    return entry[0] if entry else NEWER_STORAGE_SOP_CLASSES.get(uid, "")


@cache
def storage_sop_classes() -> frozenset[str]:
    """Every storage SOP class in pydicom's UID dictionary, retired ones included, and the
    newer ones it does not know yet.

    Retired classes stay in because old modalities still send them; Storage Commitment is a
    different service and is left out.
    """
    return frozenset(
        uid
        for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class" and "Storage" in name and "Commitment" not in name
    ) | frozenset(NEWER_STORAGE_SOP_CLASSES)


@cache
def non_storage_uids() -> frozenset[str]:
    """Every UID the standard defines other than a storage SOP class or Verification.

    Query/Retrieve and worklist models, Storage Commitment, MPPS, print management, procedure
    steps, meta SOP classes, transfer syntaxes ...: none of them is a kind of storage, so a
    listener that accepts unknown SOP classes as storage must still refuse them.
    """
    return frozenset(UID_dictionary) - storage_sop_classes() - {VERIFICATION_SOP_CLASS}


ALL_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(str(uid) for uid in AllTransferSyntaxes)
"""Every transfer syntax pydicom knows, compressed and deflated included: what a listener
accepts by default, and what a listener's list may name."""


@cache
def known_transfer_syntaxes() -> frozenset[str]:
    """:data:`ALL_TRANSFER_SYNTAXES` as a set."""
    return frozenset(ALL_TRANSFER_SYNTAXES)
