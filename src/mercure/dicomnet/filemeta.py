"""DICOM File Meta Information (PS3.10 section 7.1): build it for received datasets, read it
from files to send. Both run once per instance, so neither uses pydicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mercure.dicomnet.errors import DicomFileError
from mercure.dicomnet.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

PREAMBLE = bytes(128) + b"DICM"

_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_TAG_VR = struct.Struct("<HH2s")
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)

# (0002,0001) File Meta Information Version, OB, value 00 01.
_VERSION_ELEMENT = _LONG.pack(0x0002, 0x0001, b"OB", 2) + b"\x00\x01"


def _short_element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    return _SHORT.pack(0x0002, element, vr, len(value)) + value


_IMPLEMENTATION_ELEMENTS = _short_element(
    0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\0"
) + _short_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" ")


def build_file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    source_aet: str | None = None,
) -> bytes:
    """Preamble, ``DICM`` and a complete group 0002 for a dataset received over the network.

    Write these bytes, then the dataset bytes exactly as received, and the result is a valid
    Part 10 file (deflated datasets included: their bytes are already the deflated stream).
    """
    body = b"".join(
        (
            _VERSION_ELEMENT,
            _short_element(0x0002, b"UI", sop_class_uid.encode("ascii"), b"\0"),
            _short_element(0x0003, b"UI", sop_instance_uid.encode("ascii"), b"\0"),
            _short_element(0x0010, b"UI", transfer_syntax_uid.encode("ascii"), b"\0"),
            _IMPLEMENTATION_ELEMENTS,
            _short_element(0x0016, b"AE", source_aet.encode("ascii", "replace"), b" ")
            if source_aet
            else b"",
        )
    )
    group_length = _SHORT.pack(0x0002, 0x0000, b"UL", 4) + len(body).to_bytes(4, "little")
    return PREAMBLE + group_length + body


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What a sender needs from a Part 10 file: its identity and where the dataset starts."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_offset: int


def read_file_meta(path: Path | str) -> FileMeta:
    """Read the File Meta Information of a Part 10 file; raise DicomFileError if it has none."""
    try:
        with open(path, "rb") as handle:
            return read_file_meta_from(handle, str(path))
    except OSError as exc:
        raise DicomFileError(f"cannot read {path}: {exc}") from exc


def read_file_meta_from(handle: BinaryIO, name: str = "<stream>") -> FileMeta:
    """Like :func:`read_file_meta` on an open binary file positioned at its start."""
    head = handle.read(8192)
    if head[128:132] == b"DICM":
        start = 132
    elif head[:2] == b"\x02\x00":
        start = 0
    else:
        raise DicomFileError(f"{name} is not a DICOM Part 10 file (no File Meta Information)")
    values: dict[int, bytes] = {}
    pos = start
    while True:
        if len(head) - pos < 12:
            more = handle.read(8192)
            if not more:
                break
            head += more
            continue
        group, element, vr = _TAG_VR.unpack_from(head, pos)
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            length = _LONG.unpack_from(head, pos)[3]
            value_at = pos + 12
        else:
            length = _SHORT.unpack_from(head, pos)[3]
            value_at = pos + 8
        while value_at + length > len(head):
            more = handle.read(max(8192, value_at + length - len(head)))
            if not more:
                raise DicomFileError(f"{name}: File Meta Information is truncated")
            head += more
        values[element] = head[value_at : value_at + length]
        pos = value_at + length

    def text(element: int) -> str:
        return values.get(element, b"").decode("ascii", "replace").strip("\0 ")

    meta = FileMeta(text(0x0002), text(0x0003), text(0x0010), pos)
    if not (meta.sop_class_uid and meta.sop_instance_uid and meta.transfer_syntax_uid):
        raise DicomFileError(
            f"{name}: File Meta Information lacks SOP class, instance or transfer syntax"
        )
    return meta
