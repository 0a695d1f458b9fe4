"""UIDs the upper layer knows by name, and the default sets a listener accepts."""

from __future__ import annotations

from functools import cache

from mercure import __version__

# What the standard's registry says about a UID lives in core (the configuration checks UIDs
# too); re-exported here for the upper layer.
from mercure.core.uids import ALL_TRANSFER_SYNTAXES as ALL_TRANSFER_SYNTAXES
from mercure.core.uids import VERIFICATION_SOP_CLASS as VERIFICATION_SOP_CLASS
from mercure.core.uids import is_valid_uid as is_valid_uid
from mercure.core.uids import non_storage_uids as non_storage_uids
from mercure.core.uids import storage_sop_classes as storage_sop_classes

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

# A UUID-derived root (PS3.5 B.2) so that no organisational root has to be registered.
IMPLEMENTATION_CLASS_UID = "2.25.146793483681442330445215092145636931799"
IMPLEMENTATION_VERSION_NAME = f"MERCURE_{__version__}"[:16]

UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)


@cache
def default_sop_classes() -> frozenset[str]:
    """What a listener accepts by default: all storage SOP classes and Verification."""
    return storage_sop_classes() | {VERIFICATION_SOP_CLASS}


def is_implicit_vr(transfer_syntax_uid: str) -> bool:
    """True for the one transfer syntax whose datasets carry no VRs."""
    return transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN


def is_big_endian(transfer_syntax_uid: str) -> bool:
    """True for Explicit VR Big Endian (retired, still sent by a few old devices)."""
    return transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN


def is_deflated(transfer_syntax_uid: str) -> bool:
    """True when the dataset bytes are a raw deflate stream of an explicit VR LE dataset."""
    return transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
