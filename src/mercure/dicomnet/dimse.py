"""DIMSE command sets (PS3.7 section 9 and annex E): group 0000, always Implicit VR Little Endian.

A command set is small and flat, so it is decoded into a dict of element number -> raw value
bytes and encoded from (element, value) pairs, without pydicom: this runs once per message.
"""

from __future__ import annotations

import struct

from mercure.dicomnet.pdu import ABORT_REASON_INVALID_PARAMETER, PduError
from mercure.dicomnet.uids import VERIFICATION_SOP_CLASS

# Command Field values (PS3.7 E.1).
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_GET_RQ = 0x0010
C_GET_RSP = 0x8010
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_MOVE_RQ = 0x0021
C_MOVE_RSP = 0x8021
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF
RESPONSE_BIT = 0x8000

NO_DATASET = 0x0101
"""Command Data Set Type value meaning "no dataset follows"; any other value means one does."""

# Element numbers of group 0000.
COMMAND_GROUP_LENGTH = 0x0000
AFFECTED_SOP_CLASS_UID = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE_UID = 0x1000
REMAINING_SUBOPERATIONS = 0x1020
COMPLETED_SUBOPERATIONS = 0x1021
FAILED_SUBOPERATIONS = 0x1022
WARNING_SUBOPERATIONS = 0x1023
MOVE_ORIGINATOR_AET = 0x1030
MOVE_ORIGINATOR_MESSAGE_ID = 0x1031
FAILED_SOP_INSTANCE_UID_LIST = 0x00080058
"""Not a command element: found in some peers' C-GET/C-MOVE responses (see decode_command)."""

# Status values (PS3.7 annex C and B.2.3).
SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WITH_WARNINGS = 0xFF01
CANCEL = 0xFE00
SUBOPERATIONS_WITH_FAILURES = 0xB000
SOP_CLASS_NOT_SUPPORTED = 0x0122
UNRECOGNIZED_OPERATION = 0x0211
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
HANDLER_FAILURE = 0xC211
"""Our answer when an application's handler raised an unexpected exception (0xCxxx class)."""

WARNING_STATUSES = frozenset({0x0001, 0xB000, 0xB006, 0xB007})

_ELEMENT = struct.Struct("<HHI")
_US_ELEMENT = struct.Struct("<HHIH")
_GROUP_LENGTH = struct.Struct("<HHII")
_US_VALUE = struct.Struct("<H")


def is_success(status: int) -> bool:
    """True for Success and the warning statuses: the peer has the instance."""
    return status == SUCCESS or status in WARNING_STATUSES


def decode_command(data: bytes, *, foreign_groups: bool = False) -> dict[int, bytes]:
    """Split a command set into element number -> raw value; raise PduError when malformed.

    A command set holds group 0000 only. With ``foreign_groups`` elements of other groups are
    kept, keyed by their whole tag (``group << 16 | element``), instead of refused: DCMTK-based
    PACS (Orthanc) put the Failed SOP Instance UID List (0008,0058) into C-GET responses'
    command sets, and a requestor should still read the response.
    """
    elements: dict[int, bytes] = {}
    pos = 0
    size = len(data)
    while pos < size:
        if size - pos < 8:
            raise PduError("truncated element in a command set", ABORT_REASON_INVALID_PARAMETER)
        group, element, length = _ELEMENT.unpack_from(data, pos)
        pos += 8
        if (group != 0 and not foreign_groups) or pos + length > size:
            raise PduError("malformed command set", ABORT_REASON_INVALID_PARAMETER)
        elements[group << 16 | element if group else element] = data[pos : pos + length]
        pos += length
    return elements


def command_int(command: dict[int, bytes], element: int) -> int | None:
    """An US value of a decoded command set, or None when absent or malformed."""
    raw = command.get(element)
    if raw is None or len(raw) != 2:
        return None
    value: int = _US_VALUE.unpack(raw)[0]
    return value


def command_text(command: dict[int, bytes], element: int) -> str:
    """A UI/AE/LO value of a decoded command set without its padding ('' when absent)."""
    raw = command.get(element)
    return raw.decode("ascii", "replace").strip("\0 ") if raw else ""


def uid_value(uid: str) -> bytes:
    """A UI value padded to even length with NUL, as DICOM requires."""
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def text_value(text: str) -> bytes:
    """An AE/LO/SH value padded to even length with a space."""
    raw = text.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def encode_command(elements: list[tuple[int, bytes]]) -> bytes:
    """Encode (element, raw value) pairs, given in ascending order, with the group length."""
    body = b"".join([_ELEMENT.pack(0, element, len(value)) + value for element, value in elements])
    return _GROUP_LENGTH.pack(0, COMMAND_GROUP_LENGTH, 4, len(body)) + body


def _us(element: int, value: int) -> bytes:
    return _US_ELEMENT.pack(0, element, 2, value)


def _raw(element: int, value: bytes) -> bytes:
    return _ELEMENT.pack(0, element, len(value)) + value


def encode_response(
    command_field: int,
    message_id: int,
    status: int,
    sop_class_uid: bytes,
    sop_instance_uid: bytes | None = None,
    error_comment: str | None = None,
) -> bytes:
    """Encode a response without dataset; UID arguments are raw padded values (as received).

    This is the C-STORE-RSP hot path: the UIDs of the request are echoed without decoding.
    """
    parts = [
        _raw(AFFECTED_SOP_CLASS_UID, sop_class_uid),
        _us(COMMAND_FIELD, command_field),
        _us(MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        _us(COMMAND_DATA_SET_TYPE, NO_DATASET),
        _us(STATUS, status),
    ]
    if error_comment:
        parts.append(_raw(ERROR_COMMENT, text_value(error_comment[:64])))
    if sop_instance_uid is not None:
        parts.append(_raw(AFFECTED_SOP_INSTANCE_UID, sop_instance_uid))
    body = b"".join(parts)
    return _GROUP_LENGTH.pack(0, COMMAND_GROUP_LENGTH, 4, len(body)) + body


def encode_c_echo_rq(message_id: int) -> bytes:
    """Encode a C-ECHO-RQ command set."""
    return encode_command(
        [
            (AFFECTED_SOP_CLASS_UID, uid_value(VERIFICATION_SOP_CLASS)),
            (COMMAND_FIELD, _US_VALUE.pack(C_ECHO_RQ)),
            (MESSAGE_ID, _US_VALUE.pack(message_id)),
            (COMMAND_DATA_SET_TYPE, _US_VALUE.pack(NO_DATASET)),
        ]
    )


def encode_c_store_rq(
    sop_class_uid: str,
    sop_instance_uid: str,
    message_id: int,
    priority: int = 0,
    move_originator_aet: str | None = None,
    move_originator_message_id: int | None = None,
) -> bytes:
    """Encode a C-STORE-RQ command set (a dataset follows it)."""
    elements = [
        (AFFECTED_SOP_CLASS_UID, uid_value(sop_class_uid)),
        (COMMAND_FIELD, _US_VALUE.pack(C_STORE_RQ)),
        (MESSAGE_ID, _US_VALUE.pack(message_id)),
        (PRIORITY, _US_VALUE.pack(priority)),
        (COMMAND_DATA_SET_TYPE, _US_VALUE.pack(0x0000)),
        (AFFECTED_SOP_INSTANCE_UID, uid_value(sop_instance_uid)),
    ]
    if move_originator_aet:
        elements.append((MOVE_ORIGINATOR_AET, text_value(move_originator_aet)))
    if move_originator_message_id is not None:
        elements.append((MOVE_ORIGINATOR_MESSAGE_ID, _US_VALUE.pack(move_originator_message_id)))
    return encode_command(elements)


def encode_c_move_rq(
    sop_class_uid: str, message_id: int, move_destination: str, priority: int = 0
) -> bytes:
    """Encode a C-MOVE-RQ command set (the identifier dataset follows it)."""
    return encode_command(
        [
            (AFFECTED_SOP_CLASS_UID, uid_value(sop_class_uid)),
            (COMMAND_FIELD, _US_VALUE.pack(C_MOVE_RQ)),
            (MESSAGE_ID, _US_VALUE.pack(message_id)),
            (MOVE_DESTINATION, text_value(move_destination)),
            (PRIORITY, _US_VALUE.pack(priority)),
            (COMMAND_DATA_SET_TYPE, _US_VALUE.pack(0x0000)),
        ]
    )


def encode_c_find_rq(sop_class_uid: str, message_id: int, priority: int = 0) -> bytes:
    """Encode a C-FIND-RQ command set (the identifier dataset follows it)."""
    return encode_command(
        [
            (AFFECTED_SOP_CLASS_UID, uid_value(sop_class_uid)),
            (COMMAND_FIELD, _US_VALUE.pack(C_FIND_RQ)),
            (MESSAGE_ID, _US_VALUE.pack(message_id)),
            (PRIORITY, _US_VALUE.pack(priority)),
            (COMMAND_DATA_SET_TYPE, _US_VALUE.pack(0x0000)),
        ]
    )


def encode_c_get_rq(sop_class_uid: str, message_id: int, priority: int = 0) -> bytes:
    """Encode a C-GET-RQ command set (the identifier dataset follows it)."""
    return encode_command(
        [
            (AFFECTED_SOP_CLASS_UID, uid_value(sop_class_uid)),
            (COMMAND_FIELD, _US_VALUE.pack(C_GET_RQ)),
            (MESSAGE_ID, _US_VALUE.pack(message_id)),
            (PRIORITY, _US_VALUE.pack(priority)),
            (COMMAND_DATA_SET_TYPE, _US_VALUE.pack(0x0000)),
        ]
    )


def encode_c_cancel_rq(message_id_being_responded_to: int) -> bytes:
    """Encode a C-CANCEL-RQ command set for the request with that message ID."""
    return encode_command(
        [
            (COMMAND_FIELD, _US_VALUE.pack(C_CANCEL_RQ)),
            (MESSAGE_ID_BEING_RESPONDED_TO, _US_VALUE.pack(message_id_being_responded_to)),
            (COMMAND_DATA_SET_TYPE, _US_VALUE.pack(NO_DATASET)),
        ]
    )
