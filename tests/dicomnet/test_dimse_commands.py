"""DIMSE command sets: our small codec agrees with pydicom's reading of group 0000."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.filereader import read_dataset

from mercure.dicomnet.dimse import (
    AFFECTED_SOP_INSTANCE_UID,
    C_STORE_RSP,
    FAILED_SOP_INSTANCE_UID_LIST,
    MESSAGE_ID,
    MESSAGE_ID_BEING_RESPONDED_TO,
    OUT_OF_RESOURCES,
    STATUS,
    command_int,
    command_text,
    decode_command,
    encode_c_cancel_rq,
    encode_c_echo_rq,
    encode_c_get_rq,
    encode_c_move_rq,
    encode_c_store_rq,
    encode_response,
    is_success,
    uid_value,
)
from mercure.dicomnet.pdu import PduError

CT = "1.2.840.10008.5.1.4.1.1.2"


def pydicom_view(command: bytes):
    return read_dataset(BytesIO(command), is_implicit_VR=True, is_little_endian=True)


def test_store_request_reads_back_in_pydicom() -> None:
    """A C-STORE-RQ has the group length, fields and padding pydicom expects."""
    command = encode_c_store_rq(
        CT, "1.2.3.45", 513, priority=2, move_originator_aet="MOVER", move_originator_message_id=9
    )
    ds = pydicom_view(command)
    assert ds.CommandGroupLength == len(command) - 12
    assert (ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID) == (CT, "1.2.3.45")
    assert (ds.CommandField, ds.MessageID, ds.Priority, ds.CommandDataSetType) == (1, 513, 2, 0)
    assert (ds.MoveOriginatorApplicationEntityTitle, ds.MoveOriginatorMessageID) == ("MOVER", 9)


def test_store_response_echoes_the_request_uids_and_carries_the_status() -> None:
    """C-STORE-RSP built from raw request values: status, ids and an error comment."""
    response = encode_response(
        C_STORE_RSP, 513, OUT_OF_RESOURCES, uid_value(CT), uid_value("1.2.3.45"), "disk full"
    )
    ds = pydicom_view(response)
    assert (ds.CommandField, ds.MessageIDBeingRespondedTo, ds.Status) == (0x8001, 513, 0xA700)
    assert (ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID, ds.ErrorComment) == (
        CT,
        "1.2.3.45",
        "disk full",
    )
    assert ds.CommandDataSetType == 0x0101
    decoded = decode_command(response)
    assert command_int(decoded, STATUS) == OUT_OF_RESOURCES
    assert command_int(decoded, MESSAGE_ID_BEING_RESPONDED_TO) == 513
    assert command_text(decoded, AFFECTED_SOP_INSTANCE_UID) == "1.2.3.45"


def test_echo_request_decodes() -> None:
    """Our decoder reads our C-ECHO-RQ."""
    decoded = decode_command(encode_c_echo_rq(77))
    assert command_text(decoded, 0x0002) == "1.2.840.10008.1.1"
    assert command_int(decoded, 0x0110) == 77


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x00\x00", b"\x08\x00\x00\x00\x04\x00\x00\x00abcd", b"\x00\x00\x00\x00\xff\x00\x00\x00"],
)
def test_malformed_command_sets_raise_pdu_error(garbage: bytes) -> None:
    """Truncated elements, other groups and overlong values are PduErrors."""
    with pytest.raises(PduError):
        decode_command(garbage)


def test_warning_statuses_count_as_success() -> None:
    """Warnings (0xB000, 0xB007 ...) mean the peer kept the instance; failures do not."""
    assert is_success(0) and is_success(0xB000) and is_success(0xB007)
    assert not is_success(0xA700) and not is_success(0xC000)


def test_move_get_and_cancel_requests_read_back_in_pydicom() -> None:
    """C-MOVE-RQ, C-GET-RQ and C-CANCEL-RQ carry the fields PS3.7 C.4.2/C.4.3 ask for."""
    study_root_move = "1.2.840.10008.5.1.4.1.2.2.2"
    move = pydicom_view(encode_c_move_rq(study_root_move, 7, "MERCURE", priority=1))
    assert (move.CommandField, move.MessageID, move.Priority) == (0x0021, 7, 1)
    assert move.MoveDestination == "MERCURE" and move.AffectedSOPClassUID == study_root_move
    assert move.CommandDataSetType != 0x0101
    get = pydicom_view(encode_c_get_rq("1.2.840.10008.5.1.4.1.2.2.3", 8))
    assert (get.CommandField, get.MessageID, get.CommandDataSetType) == (0x0010, 8, 0)
    cancel = pydicom_view(encode_c_cancel_rq(8))
    assert (cancel.CommandField, cancel.MessageIDBeingRespondedTo) == (0x0FFF, 8)
    assert cancel.CommandDataSetType == 0x0101


def test_elements_of_other_groups_are_kept_only_when_asked() -> None:
    """(0008,0058) inside a response's command set (Orthanc does this): refused by default,
    kept under its whole tag with ``foreign_groups``."""
    command = encode_c_echo_rq(1) + bytes.fromhex("08005800") + (4).to_bytes(4, "little")
    command += b"1.23"
    with pytest.raises(PduError):
        decode_command(command)
    decoded = decode_command(command, foreign_groups=True)
    assert command_text(decoded, FAILED_SOP_INSTANCE_UID_LIST) == "1.23"
    assert command_int(decoded, MESSAGE_ID) == 1
