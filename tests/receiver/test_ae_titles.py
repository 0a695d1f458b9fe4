"""AE titles on the wire: the allow-list compares them exactly, after trimming spaces only, and
titles with control characters are rejected (raw A-ASSOCIATE-RQ PDUs over a real socket)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from mercure.dicomnet.pdu import (
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    PDU_HEADER,
    AssociateRequest,
    PresentationContextProposal,
    encode_associate_rq,
)
from mercure.dicomnet.uids import EXPLICIT_VR_LITTLE_ENDIAN
from mercure.testing.receiver import RunningReceiver

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_CALLED_AT = 6 + 4  # PDU header, protocol version and reserved bytes
_CALLING_AT = _CALLED_AT + 16


def associate_raw(port: int, called: bytes, calling: bytes) -> tuple[int, bytes]:
    """Send an A-ASSOCIATE-RQ whose 16-byte AE title fields hold exactly the given bytes; the
    answer's PDU type and body."""
    assert len(called) == 16 and len(calling) == 16
    proposal = PresentationContextProposal(1, CT_IMAGE_STORAGE, (EXPLICIT_VR_LITTLE_ENDIAN,))
    pdu = bytearray(encode_associate_rq(AssociateRequest("X", "Y", [proposal])))
    pdu[_CALLED_AT : _CALLED_AT + 16] = called
    pdu[_CALLING_AT : _CALLING_AT + 16] = calling
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(pdu)
        header = _recv_exactly(sock, 6)
        pdu_type, length = PDU_HEADER.unpack(header)
        return pdu_type, _recv_exactly(sock, length)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed before the answer was complete"
        data += chunk
    return data


def field(title: bytes) -> bytes:
    """A title padded with spaces to the 16 bytes of its field."""
    return title.ljust(16, b" ")


MERCURE = field(b"MERCURE")


@pytest.fixture
def allow_good(receiver_factory: Callable[..., RunningReceiver]) -> RunningReceiver:
    """A receiver whose listener accepts only the calling AE title GOOD."""
    return receiver_factory(listener={"allowed_calling_aets": ["GOOD"]})


@pytest.mark.parametrize(
    "calling",
    [b"GOOD".ljust(16), b"  GOOD".ljust(16), b" " * 12 + b"GOOD"],
    ids=["trailing-spaces", "leading-spaces", "right-aligned"],
)
def test_allowed_calling_aet_is_accepted_with_space_padding(
    allow_good: RunningReceiver, calling: bytes
) -> None:
    """Leading and trailing spaces are insignificant (PS3.5 AE): GOOD padded any way is GOOD."""
    pdu_type, _ = associate_raw(allow_good.port, MERCURE, calling)
    assert pdu_type == A_ASSOCIATE_AC


@pytest.mark.parametrize(
    "calling",
    [
        b"GOOD\0".ljust(16),
        b"GOOD".ljust(16, b"\0"),
        b"GOOD\0\0  ".ljust(16),
        b"GOOD\t".ljust(16),
        b"GOOD\n".ljust(16),
        b"\0GOOD".ljust(16),
        b"GO\x7fOD".ljust(16),
        b"GOOD\\".ljust(16),
        b"GOODX".ljust(16),
        b"good".ljust(16),
        b" " * 16,
    ],
    ids=[
        "nul",
        "nul-padded",
        "nul-then-spaces",
        "tab",
        "newline",
        "leading-nul",
        "del",
        "backslash",
        "longer",
        "lower-case",
        "empty",
    ],
)
def test_calling_aet_that_is_not_exactly_allowed_is_rejected(
    allow_good: RunningReceiver, calling: bytes
) -> None:
    """NUL, control characters, backslash or another title: rejected, calling AE not recognised."""
    pdu_type, body = associate_raw(allow_good.port, MERCURE, calling)
    assert pdu_type == A_ASSOCIATE_RJ
    # result permanent (1), source service user (1), reason calling AE not recognised (3)
    assert tuple(body[1:4]) == (1, 1, 3)
    assert allow_good.instances() == []


@pytest.mark.parametrize(
    "calling", [b"CT\0".ljust(16), b"CT\r\nFAKE LOG".ljust(16)], ids=["nul", "crlf"]
)
def test_calling_aet_with_control_characters_is_rejected_without_allow_list(
    receiver: RunningReceiver, calling: bytes
) -> None:
    """Without an allow-list, a title with control characters is still refused (it would end up
    in logs, journals and tags)."""
    pdu_type, body = associate_raw(receiver.port, MERCURE, calling)
    assert pdu_type == A_ASSOCIATE_RJ and tuple(body[1:4]) == (1, 1, 3)
    assert "\nFAKE LOG" not in receiver.log_text()


@pytest.mark.parametrize(
    "called", [b"MERCURE\0".ljust(16), b"MERCURE".ljust(16, b"\0"), b"MERC\x01URE".ljust(16)]
)
def test_called_aet_with_control_characters_is_rejected(
    receiver: RunningReceiver, called: bytes
) -> None:
    """The called AE title is held to the same rule: rejected, called AE not recognised (7)."""
    pdu_type, body = associate_raw(receiver.port, called, field(b"CT01"))
    assert pdu_type == A_ASSOCIATE_RJ and tuple(body[1:4]) == (1, 1, 7)


def test_called_aet_with_leading_spaces_is_accepted(receiver: RunningReceiver) -> None:
    """Leading spaces of the called AE title are insignificant too."""
    pdu_type, _ = associate_raw(receiver.port, b"   MERCURE".ljust(16), field(b"CT01"))
    assert pdu_type == A_ASSOCIATE_AC
