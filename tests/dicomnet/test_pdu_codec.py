"""Association PDUs: our codec against itself and against pynetdicom's independent one."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ

from mercure.dicomnet.negotiation import negotiate
from mercure.dicomnet.pdu import (
    A_ABORT,
    P_DATA_TF,
    PDU_HEADER,
    PDV_HEADER,
    AssociateAccept,
    AssociateRequest,
    PduError,
    PresentationContextProposal,
    PresentationContextResult,
    RoleSelection,
    decode_abort,
    decode_associate_ac,
    decode_associate_rq,
    encode_abort,
    encode_associate_ac,
    encode_associate_rq,
    encode_pdata,
)
from mercure.dicomnet.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_BASELINE,
    VERIFICATION_SOP_CLASS,
    default_sop_classes,
)

CT = "1.2.840.10008.5.1.4.1.1.2"


def sample_request() -> AssociateRequest:
    return AssociateRequest(
        called_aet="DICOMNET",
        calling_aet="MODALITY",
        contexts=[
            PresentationContextProposal(1, CT, (JPEG_BASELINE, EXPLICIT_VR_LITTLE_ENDIAN)),
            PresentationContextProposal(3, VERIFICATION_SOP_CLASS, (IMPLICIT_VR_LITTLE_ENDIAN,)),
            PresentationContextProposal(5, "1.2.3.4.5", (IMPLICIT_VR_LITTLE_ENDIAN,)),
        ],
        max_pdu=32768,
        role_selections=[RoleSelection(CT, scu_role=True, scp_role=False)],
    )


def test_request_survives_encode_and_decode() -> None:
    """Every field of an A-ASSOCIATE-RQ comes back as it was encoded."""
    request = sample_request()
    encoded = encode_associate_rq(request)
    assert PDU_HEADER.unpack_from(encoded) == (1, len(encoded) - 6)
    assert decode_associate_rq(encoded[6:]) == request


def test_pynetdicom_reads_our_request() -> None:
    """pynetdicom decodes our A-ASSOCIATE-RQ to the same AE titles, contexts and user info."""
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(encode_associate_rq(sample_request()))
    assert (pdu.called_ae_title, pdu.calling_ae_title) == ("DICOMNET", "MODALITY")
    assert [
        (c.context_id, c.abstract_syntax, c.transfer_syntax) for c in pdu.presentation_context
    ] == [
        (1, CT, [JPEG_BASELINE, EXPLICIT_VR_LITTLE_ENDIAN]),
        (3, VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN]),
        (5, "1.2.3.4.5", [IMPLICIT_VR_LITTLE_ENDIAN]),
    ]
    assert pdu.user_information.maximum_length == 32768
    role = pdu.user_information.role_selection[CT]
    assert (role.scu_role, role.scp_role) == (True, False)


def test_we_read_pynetdicoms_request() -> None:
    """A request encoded by pynetdicom decodes to what pynetdicom put in."""
    theirs = A_ASSOCIATE_RQ()
    theirs.decode(encode_associate_rq(sample_request()))
    again = A_ASSOCIATE_RQ()
    again.from_primitive(theirs.to_primitive())
    assert decode_associate_rq(again.encode()[6:]) == sample_request()


def test_pynetdicom_reads_our_accept_with_negotiated_results() -> None:
    """Our A-ASSOCIATE-AC: the first acceptable syntax, refusals, role reply, our max PDU."""
    request = sample_request()
    negotiated = negotiate(
        request, default_sop_classes(), [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
    )
    accept = AssociateAccept(
        "DICOMNET",
        "MODALITY",
        negotiated.results,
        max_pdu=65536,
        role_selections=negotiated.role_replies,
    )
    encoded = encode_associate_ac(accept)
    assert decode_associate_ac(encoded[6:]) == accept
    pdu = A_ASSOCIATE_AC()
    pdu.decode(encoded)
    results = [(c.context_id, c.result, c.transfer_syntax) for c in pdu.presentation_context]
    assert results == [
        (1, 0, EXPLICIT_VR_LITTLE_ENDIAN),
        (3, 0, IMPLICIT_VR_LITTLE_ENDIAN),
        (5, 3, IMPLICIT_VR_LITTLE_ENDIAN),
    ]
    assert pdu.user_information.maximum_length == 65536
    role = pdu.user_information.role_selection[CT]
    assert (role.scu_role, role.scp_role) == (True, False)


def test_negotiation_prefers_the_requestors_order() -> None:
    """Of several acceptable syntaxes, the one the requestor lists first is chosen."""
    request = AssociateRequest(
        "A",
        "B",
        [
            PresentationContextProposal(
                1, CT, (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)
            )
        ],
    )
    negotiated = negotiate(request, {CT}, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])
    assert negotiated.results == [PresentationContextResult(1, 0, IMPLICIT_VR_LITTLE_ENDIAN)]


def test_negotiation_refuses_unaccepted_syntaxes() -> None:
    """A context offering only syntaxes the listener refuses is answered 'not supported' (4)."""
    request = AssociateRequest("A", "B", [PresentationContextProposal(1, CT, (JPEG_BASELINE,))])
    negotiated = negotiate(request, {CT}, [EXPLICIT_VR_LITTLE_ENDIAN])
    assert negotiated.results[0].result == 4 and not negotiated.accepted


def test_encode_pdata_splits_at_the_peers_maximum() -> None:
    """A payload over the peer's maximum PDU goes out as several PDUs, last flag at the end."""
    payload = bytes(range(256)) * 40
    encoded = encode_pdata(7, payload, command=False, max_pdu=4096)
    pos, pieces, flags = 0, [], []
    while pos < len(encoded):
        pdu_type, length = PDU_HEADER.unpack_from(encoded, pos)
        assert pdu_type == P_DATA_TF and length <= 4096
        item_length, context_id, flag = PDV_HEADER.unpack_from(encoded, pos + 6)
        assert context_id == 7 and item_length == length - 4
        pieces.append(encoded[pos + 12 : pos + 6 + length])
        flags.append(flag)
        pos += 6 + length
    assert b"".join(pieces) == payload
    assert flags == [0] * (len(flags) - 1) + [2]


def test_abort_round_trips() -> None:
    """A-ABORT carries source and reason."""
    encoded = encode_abort(2, 6)
    assert encoded[0] == A_ABORT and decode_abort(encoded[6:]) == (2, 6)


@pytest.mark.parametrize("cut", [10, 67, 75, 80])
def test_truncated_request_raises_pdu_error(cut: int) -> None:
    """A request cut short is a PduError, never an IndexError or a struct.error."""
    with pytest.raises(PduError):
        decode_associate_rq(encode_associate_rq(sample_request())[6:cut])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 400))
def test_decoders_raise_only_pdu_errors_on_garbage(noise: bytes, at: int) -> None:
    """Random bytes, alone or spliced into a valid request, decode or raise PduError."""
    valid = encode_associate_rq(sample_request())[6:]
    for body in (noise, valid[:at] + noise + valid[at:]):
        for decoder in (decode_associate_rq, decode_associate_ac):
            with contextlib.suppress(PduError):
                decoder(body)
