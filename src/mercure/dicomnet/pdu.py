"""Upper-layer PDUs (PS3.8 section 9.3): association PDUs as objects, P-DATA as raw bytes.

Association set-up happens once per association, so its PDUs are decoded into small objects.
P-DATA-TF is the hot path: it is never decoded into objects here, only framed (see
``connection.py`` for the reader and :func:`encode_pdata` for the writer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mercure.dicomnet.errors import DicomNetError
from mercure.dicomnet.uids import (
    APPLICATION_CONTEXT_NAME,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
)

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

PDU_HEADER = struct.Struct(">BxI")
PDV_HEADER = struct.Struct(">IBB")
_PDATA_ONE_PDV = struct.Struct(">BxIIBB")
_ITEM_HEADER = struct.Struct(">BxH")

# A-ASSOCIATE-RJ result / source / reason (PS3.8 table 9-21).
REJECTED_PERMANENT = 1
REJECTED_TRANSIENT = 2
SOURCE_SERVICE_USER = 1
SOURCE_PROVIDER_ACSE = 2
SOURCE_PROVIDER_PRESENTATION = 3

# A-ABORT source / reason (PS3.8 table 9-26).
ABORT_SOURCE_SERVICE_USER = 0
ABORT_SOURCE_PROVIDER = 2
ABORT_REASON_NOT_SPECIFIED = 0
ABORT_REASON_UNRECOGNIZED_PDU = 1
ABORT_REASON_UNEXPECTED_PDU = 2
ABORT_REASON_UNRECOGNIZED_PARAMETER = 4
ABORT_REASON_UNEXPECTED_PARAMETER = 5
ABORT_REASON_INVALID_PARAMETER = 6

# Presentation context results (PS3.8 table 9-18).
PC_ACCEPTANCE = 0
PC_USER_REJECTION = 1
PC_NO_REASON = 2
PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

DEFAULT_PEER_MAX_PDU = 16384
"""Assumed when a peer omits the Maximum Length sub-item (it is mandatory, some forget)."""

_REJECT_REASONS = {
    (SOURCE_SERVICE_USER, 1): "no reason given",
    (SOURCE_SERVICE_USER, 2): "application context name not supported",
    (SOURCE_SERVICE_USER, 3): "calling AE title not recognised",
    (SOURCE_SERVICE_USER, 7): "called AE title not recognised",
    (SOURCE_PROVIDER_ACSE, 1): "no reason given (ACSE)",
    (SOURCE_PROVIDER_ACSE, 2): "protocol version not supported",
    (SOURCE_PROVIDER_PRESENTATION, 1): "temporary congestion",
    (SOURCE_PROVIDER_PRESENTATION, 2): "local limit exceeded",
}
_ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognised PDU",
    2: "unexpected PDU",
    4: "unrecognised PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


class PduError(DicomNetError):
    """A PDU broke the protocol; the association is aborted with ``abort_reason``."""

    def __init__(self, message: str, abort_reason: int = ABORT_REASON_INVALID_PARAMETER) -> None:
        self.abort_reason = abort_reason
        super().__init__(message)


def describe_rejection(result: int, source: int, reason: int) -> str:
    """Human-readable text of an A-ASSOCIATE-RJ's result, source and reason."""
    kind = {REJECTED_PERMANENT: "permanent", REJECTED_TRANSIENT: "transient"}.get(result, "?")
    text = _REJECT_REASONS.get((source, reason), f"source {source} reason {reason}")
    return f"{text} ({kind})"


def describe_abort(source: int, reason: int) -> str:
    """Human-readable text of an A-ABORT's source and reason."""
    if source == ABORT_SOURCE_PROVIDER:
        return f"aborted by the peer's upper layer: {_ABORT_REASONS.get(reason, str(reason))}"
    return "aborted by the peer"


@dataclass(frozen=True, slots=True)
class PresentationContextProposal:
    """One presentation context of an A-ASSOCIATE-RQ."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresentationContextResult:
    """The acceptor's answer to one proposed context (``result`` 0 is acceptance)."""

    context_id: int
    result: int
    transfer_syntax: str


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4) for one SOP class."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """User Identity negotiation sub-item of a request (PS3.7 D.3.3.7)."""

    identity_type: int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes


@dataclass(slots=True)
class AssociateRequest:
    """A decoded A-ASSOCIATE-RQ."""

    called_aet: str
    calling_aet: str
    contexts: list[PresentationContextProposal]
    max_pdu: int = DEFAULT_PEER_MAX_PDU
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = 1
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME
    role_selections: list[RoleSelection] = field(default_factory=list)
    user_identity: UserIdentity | None = None


@dataclass(slots=True)
class AssociateAccept:
    """A decoded or to-be-sent A-ASSOCIATE-AC."""

    called_aet: str
    calling_aet: str
    results: list[PresentationContextResult]
    max_pdu: int = DEFAULT_PEER_MAX_PDU
    application_context: str = APPLICATION_CONTEXT_NAME
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME
    role_selections: list[RoleSelection] = field(default_factory=list)


# --- decoding ---------------------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip(" \0")


def _title(raw: bytes) -> str:
    # Latin-1 maps every byte, so whatever title a peer sends can be echoed back unchanged.
    # Only spaces are padding (PS3.8 9.3.2, PS3.5 6.2 AE): a NUL or other control character is
    # part of the title, and ae_title_problem() tells the acceptor to refuse it.
    return raw.decode("latin-1").strip(" ")


_AE_TITLE_CHARACTERS = frozenset(chr(code) for code in range(0x20, 0x7F)) - {"\\"}


def ae_title_problem(title: str) -> str | None:
    """Why ``title`` (as decoded, spaces trimmed) is no valid AE title, or None when it is.

    PS3.5 6.2: the default character repertoire without backslash and control characters.
    An empty title passes here; whether one is acceptable is the application's decision.
    """
    if _AE_TITLE_CHARACTERS.issuperset(title):
        return None
    bad = next(char for char in title if char not in _AE_TITLE_CHARACTERS)
    return f"AE title {title!r} holds the character {bad!r} (0x{ord(bad):02X})"


def shown_title(title: str) -> str:
    """An AE title for a log line: as it is when valid, else quoted and escaped (a peer could
    otherwise write line breaks or terminal escapes into the log)."""
    return title if ae_title_problem(title) is None else repr(title)


def _items(body: bytes, pos: int, end: int) -> list[tuple[int, bytes]]:
    """Split a run of items (type, reserved, 2-byte length) into (type, value) pairs."""
    items = []
    while pos < end:
        if end - pos < 4:
            raise PduError("truncated item header")
        item_type, length = _ITEM_HEADER.unpack_from(body, pos)
        pos += 4
        if pos + length > end:
            raise PduError(f"item 0x{item_type:02X} is longer than its PDU")
        items.append((item_type, body[pos : pos + length]))
        pos += length
    return items


def _decode_fixed_fields(body: bytes) -> tuple[int, str, str]:
    if len(body) < 68:
        raise PduError("association PDU shorter than its fixed fields")
    version = int.from_bytes(body[0:2], "big")
    return version, _title(body[4:20]), _title(body[20:36])


def _decode_user_info(value: bytes, target: AssociateRequest | AssociateAccept) -> None:
    for sub_type, sub in _items(value, 0, len(value)):
        if sub_type == 0x51:
            if len(sub) != 4:
                raise PduError("Maximum Length sub-item must hold 4 bytes")
            target.max_pdu = int.from_bytes(sub, "big")
        elif sub_type == 0x52:
            target.implementation_class_uid = _text(sub)
        elif sub_type == 0x55:
            target.implementation_version_name = _text(sub)
        elif sub_type == 0x54:
            if len(sub) < 4:
                raise PduError("truncated role selection sub-item")
            uid_length = int.from_bytes(sub[0:2], "big")
            if len(sub) != uid_length + 4:
                raise PduError("role selection sub-item has a wrong length")
            target.role_selections.append(
                RoleSelection(_text(sub[2 : 2 + uid_length]), bool(sub[-2]), bool(sub[-1]))
            )
        elif sub_type == 0x58 and isinstance(target, AssociateRequest):
            target.user_identity = _decode_user_identity(sub)
        # Asynchronous operations window (0x53) and extended negotiation (0x56, 0x57) are not
        # answered: by PS3.7 D.3.3 an unanswered sub-item means "not supported / default".


def _decode_user_identity(sub: bytes) -> UserIdentity:
    if len(sub) < 6:
        raise PduError("truncated user identity sub-item")
    primary_length = int.from_bytes(sub[2:4], "big")
    secondary_at = 4 + primary_length
    if secondary_at + 2 > len(sub):
        raise PduError("user identity primary field overruns the sub-item")
    secondary_length = int.from_bytes(sub[secondary_at : secondary_at + 2], "big")
    if secondary_at + 2 + secondary_length != len(sub):
        raise PduError("user identity sub-item has a wrong length")
    return UserIdentity(
        sub[0],
        bool(sub[1]),
        sub[4:secondary_at],
        sub[secondary_at + 2 : secondary_at + 2 + secondary_length],
    )


def decode_associate_rq(body: bytes) -> AssociateRequest:
    """Decode the variable part of an A-ASSOCIATE-RQ (the PDU without its 6-byte header)."""
    version, called, calling = _decode_fixed_fields(body)
    request = AssociateRequest(called_aet=called, calling_aet=calling, contexts=[])
    request.protocol_version = version
    request.application_context = ""
    seen_ids: set[int] = set()
    for item_type, value in _items(body, 68, len(body)):
        if item_type == 0x10:
            request.application_context = _text(value)
        elif item_type == 0x20:
            if len(value) < 4:
                raise PduError("truncated presentation context item")
            context_id = value[0]
            if context_id in seen_ids:
                raise PduError(f"presentation context {context_id} proposed twice")
            seen_ids.add(context_id)
            abstract = ""
            syntaxes = []
            for sub_type, sub in _items(value, 4, len(value)):
                if sub_type == 0x30:
                    abstract = _text(sub)
                elif sub_type == 0x40:
                    syntaxes.append(_text(sub))
            request.contexts.append(
                PresentationContextProposal(context_id, abstract, tuple(syntaxes))
            )
        elif item_type == 0x50:
            _decode_user_info(value, request)
    return request


def decode_associate_ac(body: bytes) -> AssociateAccept:
    """Decode the variable part of an A-ASSOCIATE-AC (the PDU without its 6-byte header)."""
    _version, called, calling = _decode_fixed_fields(body)
    accept = AssociateAccept(called_aet=called, calling_aet=calling, results=[])
    for item_type, value in _items(body, 68, len(body)):
        if item_type == 0x10:
            accept.application_context = _text(value)
        elif item_type == 0x21:
            if len(value) < 4:
                raise PduError("truncated presentation context result item")
            syntax = ""
            for sub_type, sub in _items(value, 4, len(value)):
                if sub_type == 0x40:
                    syntax = _text(sub)
            accept.results.append(PresentationContextResult(value[0], value[2], syntax))
        elif item_type == 0x50:
            _decode_user_info(value, accept)
    return accept


def decode_associate_rj(body: bytes) -> tuple[int, int, int]:
    """Decode an A-ASSOCIATE-RJ body into (result, source, reason)."""
    if len(body) < 4:
        raise PduError("truncated A-ASSOCIATE-RJ")
    return body[1], body[2], body[3]


def decode_abort(body: bytes) -> tuple[int, int]:
    """Decode an A-ABORT body into (source, reason)."""
    if len(body) < 4:
        raise PduError("truncated A-ABORT")
    return body[2], body[3]


# --- encoding ---------------------------------------------------------------------------------


def _item(item_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02X} too long ({len(value)} bytes)")
    return _ITEM_HEADER.pack(item_type, len(value)) + value


def _aet(title: str) -> bytes:
    raw = title.encode("latin-1")
    if not 0 < len(raw) <= 16:
        raise ValueError(f"AE title {title!r} must have 1 to 16 characters")
    return raw.ljust(16, b" ")


def _uid(uid: str) -> bytes:
    return uid.encode("ascii", "replace")


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return PDU_HEADER.pack(pdu_type, len(body)) + body


def _user_info(max_pdu: int, impl_uid: str, impl_version: str, roles: list[RoleSelection]) -> bytes:
    subs = [_item(0x51, max_pdu.to_bytes(4, "big")), _item(0x52, _uid(impl_uid))]
    for role in roles:
        uid = _uid(role.sop_class_uid)
        subs.append(
            _item(0x54, len(uid).to_bytes(2, "big") + uid + bytes((role.scu_role, role.scp_role)))
        )
    if impl_version:
        subs.append(_item(0x55, impl_version.encode("ascii")))
    return _item(0x50, b"".join(subs))


def _fixed_fields(called_aet: str, calling_aet: str) -> bytes:
    return b"\x00\x01\x00\x00" + _aet(called_aet) + _aet(calling_aet) + bytes(32)


def encode_associate_rq(request: AssociateRequest) -> bytes:
    """Encode an A-ASSOCIATE-RQ PDU."""
    parts = [
        _fixed_fields(request.called_aet, request.calling_aet),
        _item(0x10, _uid(request.application_context)),
    ]
    for ctx in request.contexts:
        subs = [_item(0x30, _uid(ctx.abstract_syntax))]
        subs += [_item(0x40, _uid(ts)) for ts in ctx.transfer_syntaxes]
        parts.append(_item(0x20, bytes((ctx.context_id, 0, 0, 0)) + b"".join(subs)))
    parts.append(
        _user_info(
            request.max_pdu,
            request.implementation_class_uid,
            request.implementation_version_name,
            request.role_selections,
        )
    )
    return _pdu(A_ASSOCIATE_RQ, b"".join(parts))


def encode_associate_ac(accept: AssociateAccept) -> bytes:
    """Encode an A-ASSOCIATE-AC PDU; the AE fields echo the request (PS3.8 9.3.3.2)."""
    parts = [
        _fixed_fields(accept.called_aet, accept.calling_aet),
        _item(0x10, _uid(accept.application_context)),
    ]
    for res in accept.results:
        value = bytes((res.context_id, 0, res.result, 0)) + _item(0x40, _uid(res.transfer_syntax))
        parts.append(_item(0x21, value))
    parts.append(
        _user_info(
            accept.max_pdu,
            accept.implementation_class_uid,
            accept.implementation_version_name,
            accept.role_selections,
        )
    )
    return _pdu(A_ASSOCIATE_AC, b"".join(parts))


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    """Encode an A-ASSOCIATE-RJ PDU."""
    return _pdu(A_ASSOCIATE_RJ, bytes((0, result, source, reason)))


def encode_release_rq() -> bytes:
    """Encode an A-RELEASE-RQ PDU."""
    return _pdu(A_RELEASE_RQ, bytes(4))


def encode_release_rp() -> bytes:
    """Encode an A-RELEASE-RP PDU."""
    return _pdu(A_RELEASE_RP, bytes(4))


def encode_abort(source: int, reason: int) -> bytes:
    """Encode an A-ABORT PDU."""
    return _pdu(A_ABORT, bytes((0, 0, source, reason)))


def encode_pdata(context_id: int, payload: bytes, *, command: bool, max_pdu: int) -> bytes:
    """Frame a whole message part (command or dataset) as P-DATA-TF PDUs of one PDV each.

    ``max_pdu`` is the peer's maximum PDU length (0: unlimited); each PDV then carries at most
    ``max_pdu - 6`` bytes so that PDV header plus data fit the PDU's variable field.
    """
    flags = 0x01 if command else 0x00
    size = len(payload)
    step = max(max_pdu - 6, 1) if max_pdu else size
    if size <= step:
        return (
            _PDATA_ONE_PDV.pack(P_DATA_TF, size + 6, size + 2, context_id, flags | 0x02) + payload
        )
    parts: list[bytes | memoryview] = []
    view = memoryview(payload)
    for start in range(0, size, step):
        chunk = view[start : start + step]
        last = 0x02 if start + step >= size else 0x00
        parts.append(
            _PDATA_ONE_PDV.pack(P_DATA_TF, len(chunk) + 6, len(chunk) + 2, context_id, flags | last)
        )
        parts.append(chunk)
    return b"".join(parts)


def pdata_header(context_id: int, data_length: int, *, command: bool, last: bool) -> bytes:
    """The 12 header bytes of a P-DATA-TF PDU holding one PDV of ``data_length`` bytes."""
    flags = (0x01 if command else 0x00) | (0x02 if last else 0x00)
    return _PDATA_ONE_PDV.pack(P_DATA_TF, data_length + 6, data_length + 2, context_id, flags)
