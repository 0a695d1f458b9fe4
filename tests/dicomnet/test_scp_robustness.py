"""The acceptor under abuse: aborts, lost connections, timeouts, handler failures, limits."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable

import pytest
from dicomnet_helpers import RawPeer, ServerThread

from mercure.dicomnet import (
    HANDLER_FAILURE,
    OUT_OF_RESOURCES,
    REJECT_CALLED_AET,
    Association,
    AssociationRejected,
    AssociationRequest,
    ContextProposal,
    Rejection,
    StoreContext,
    StoreRefused,
)
from mercure.dicomnet.dimse import (
    C_FIND_RQ,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    MESSAGE_ID,
    NO_DATASET,
    STATUS,
    UNRECOGNIZED_OPERATION,
    command_int,
    encode_command,
    uid_value,
)
from mercure.dicomnet.pdu import (
    A_ABORT,
    A_ASSOCIATE_RJ,
    A_RELEASE_RP,
    ABORT_REASON_UNEXPECTED_PARAMETER,
    ABORT_REASON_UNEXPECTED_PDU,
    ABORT_REASON_UNRECOGNIZED_PDU,
    encode_abort,
    encode_pdata,
    encode_release_rq,
)
from mercure.dicomnet.recording import RecordingHandler, RecordingSink
from mercure.dicomnet.uids import VERIFICATION_SOP_CLASS
from mercure.testing.wait import wait_until

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def closed_stats(server: ServerThread):
    handler = server.handler
    assert isinstance(handler, RecordingHandler)
    return wait_until(lambda: handler.closed, message="on_association_closed")[0]


def expect_abort(peer: RawPeer, reason: int | None = None) -> None:
    pdu = peer.recv_pdu()
    assert pdu is not None and pdu[0] == A_ABORT, pdu
    if reason is not None:
        assert pdu[1][3] == reason
    assert peer.recv_pdu() is None


def test_peer_abort_mid_dataset_aborts_the_sink(scp, raw_peer) -> None:
    """A-ABORT in the middle of a dataset: the sink's abort() runs, nothing is stored."""
    server = scp()
    peer = raw_peer(server.port)
    peer.associate(CT)
    peer.send_store_command(1, CT, "1.2.3.4")
    peer.send_data(1, b"\x08\x00\x18\x00UI\x08\x001.2.3.4\x00", last=False)
    peer.send(encode_abort(0, 0))
    stats = closed_stats(server)
    assert stats.outcome == "aborted_by_peer"
    assert [c.sop_instance_uid for c in server.handler.aborted] == ["1.2.3.4"]
    assert server.handler.instances == []


def test_connection_lost_mid_dataset_aborts_the_sink(scp, raw_peer) -> None:
    """A dropped connection in the middle of a dataset aborts the sink too."""
    server = scp()
    peer = raw_peer(server.port)
    peer.associate(CT)
    peer.send_store_command(1, CT, "1.2.3.5")
    peer.send_data(1, bytes(1000), last=False)
    peer.close()
    stats = closed_stats(server)
    assert stats.outcome == "connection_lost" and stats.bytes_received == 1000
    assert [c.sop_instance_uid for c in server.handler.aborted] == ["1.2.3.5"]


def test_release_answers_and_reports_counts(scp, raw_peer) -> None:
    """A-RELEASE-RQ gets A-RELEASE-RP; the statistics count the stored instance and its bytes."""
    server = scp()
    peer = raw_peer(server.port)
    peer.associate(CT)
    peer.send_store_command(1, CT, "1.2.3.6")
    peer.send_data(1, b"ab", last=False)
    peer.send_data(1, b"cd", last=True)
    assert command_int(peer.read_response(), STATUS) == 0
    peer.send(encode_release_rq())
    assert peer.recv_pdu() == (A_RELEASE_RP, bytes(4))
    stats = closed_stats(server)
    assert stats.released and stats.instances_stored == 1 and stats.bytes_received == 4
    assert server.handler.instances[0].dataset == b"abcd"
    assert stats.association.calling_aet == "RAWPEER" and stats.association.called_aet == "DICOMNET"


class FailingHandler(RecordingHandler):
    """Fails in the way the SOP instance UID names: open, write, finish, refuse, async."""

    def open_store(self, context: StoreContext) -> RecordingSink:
        kind = context.sop_instance_uid.rsplit(".", 1)[-1]
        if kind == "1":
            raise RuntimeError("open_store broke")
        if kind == "4":
            raise StoreRefused(OUT_OF_RESOURCES, "disk nearly full")
        return FailingSink(self, context, kind)


class FailingSink(RecordingSink):
    def __init__(self, handler: RecordingHandler, context: StoreContext, kind: str) -> None:
        super().__init__(handler, context)
        self.kind = kind

    def write(self, chunk: memoryview) -> None:
        if self.kind == "2":
            raise OSError(5, "I/O error")
        super().write(chunk)

    def finish(self) -> int | Awaitable[int]:
        if self.kind == "3":
            raise ValueError("finish broke")
        if self.kind in ("6", "7"):
            return self._finish_later()
        return super().finish()

    async def _finish_later(self) -> int:
        await asyncio.sleep(0.01)
        if self.kind == "7":
            raise StoreRefused(OUT_OF_RESOURCES, "no space after all")
        return super().finish()


def test_handler_failures_become_failure_statuses_and_the_association_goes_on(
    scp, raw_peer
) -> None:
    """Exceptions in open_store/write/finish answer 0xC211, StoreRefused its status; no crash."""
    server = scp(FailingHandler())

    async def send_all() -> list[int]:
        async with await Association.connect(
            "127.0.0.1", server.port, called_aet="DICOMNET", contexts=[ContextProposal(CT)]
        ) as assoc:
            statuses = []
            for kind in range(1, 8):
                response = await assoc.store_dataset(
                    CT, f"1.2.9.{kind}", "1.2.840.10008.1.2.1", bytes(3000)
                )
                statuses.append(response.status)
            return statuses

    statuses = asyncio.run(send_all())
    assert statuses == [
        HANDLER_FAILURE,
        HANDLER_FAILURE,
        HANDLER_FAILURE,
        OUT_OF_RESOURCES,
        0,
        0,
        OUT_OF_RESOURCES,
    ]
    handler = server.handler
    assert sorted(c.sop_instance_uid for c in handler.aborted) == ["1.2.9.2", "1.2.9.3", "1.2.9.7"]
    assert sorted(i.context.sop_instance_uid for i in handler.instances) == ["1.2.9.5", "1.2.9.6"]
    stats = closed_stats(server)
    assert (stats.instances_stored, stats.instances_failed) == (2, 5)


def test_dataset_on_a_context_of_another_sop_class_is_refused(scp, raw_peer) -> None:
    """A C-STORE whose SOP class differs from its context's is answered 0xA900 and dropped."""
    server = scp()
    peer = raw_peer(server.port)
    peer.associate(CT, MR)
    peer.send_store_command(1, MR, "1.2.3.7")
    peer.send_data(1, bytes(10), last=True)
    assert command_int(peer.read_response(), STATUS) == DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert server.handler.instances == []


def test_unsupported_command_is_answered_unrecognised_operation(scp, raw_peer) -> None:
    """A C-FIND-RQ on a storage context gets a C-FIND-RSP with status 0x0211."""
    server = scp()
    peer = raw_peer(server.port)
    peer.associate(CT)
    command = encode_command(
        [
            (0x0002, uid_value(CT)),
            (COMMAND_FIELD, struct.pack("<H", C_FIND_RQ)),
            (MESSAGE_ID, struct.pack("<H", 7)),
            (COMMAND_DATA_SET_TYPE, struct.pack("<H", 0)),
        ]
    )
    peer.send(encode_pdata(1, command, command=True, max_pdu=0))
    peer.send_data(1, bytes(8), last=True)
    response = peer.read_response()
    assert command_int(response, COMMAND_FIELD) == C_FIND_RQ | 0x8000
    assert command_int(response, STATUS) == UNRECOGNIZED_OPERATION
    assert command_int(response, COMMAND_DATA_SET_TYPE) == NO_DATASET


def test_silent_connection_is_closed_when_artim_expires(scp, raw_peer) -> None:
    """A connection that never sends A-ASSOCIATE-RQ is aborted after the ACSE timeout."""
    server = scp(acse_timeout=0.2)
    peer = raw_peer(server.port)
    expect_abort(peer)
    wait_until(lambda: server.server.connections == 0, message="connection dropped")


def test_idle_association_is_aborted_after_the_idle_timeout(scp, raw_peer) -> None:
    """An association that goes quiet is aborted; the statistics say so."""
    server = scp(idle_timeout=0.3)
    peer = raw_peer(server.port)
    peer.associate(CT)
    expect_abort(peer)
    stats = closed_stats(server)
    assert stats.outcome == "aborted_locally" and "idle" in stats.reason


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x09\x00\x00\x00\x00\x04abcd", ABORT_REASON_UNRECOGNIZED_PDU),
        (b"\x04\x00\x00\x00\x00\x0c\x00\x00\x00\x08\x01\x03abcdef", ABORT_REASON_UNEXPECTED_PDU),
        (b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00", ABORT_REASON_UNEXPECTED_PDU),
        (b"\x01\x00\x7f\xff\xff\xff", None),
    ],
    ids=["unknown-type", "p-data-first", "release-first", "oversized"],
)
def test_malformed_first_pdu_is_answered_with_abort(
    scp, raw_peer, garbage: bytes, reason: int | None
) -> None:
    """Unknown, unexpected and oversized PDUs get A-ABORT and a closed connection."""
    server = scp()
    peer = raw_peer(server.port)
    peer.send(garbage)
    expect_abort(peer, reason)
    wait_until(lambda: server.server.connections == 0, message="connection dropped")


def test_message_on_a_context_never_accepted_aborts(scp, raw_peer) -> None:
    """A PDV for a presentation context ID that was not accepted aborts the association."""
    server = scp()
    peer = raw_peer(server.port)
    peer.associate(CT)
    peer.send_store_command(5, CT, "1.2.3.8")
    expect_abort(peer, ABORT_REASON_UNEXPECTED_PARAMETER)
    assert closed_stats(server).outcome == "aborted_locally"


def test_too_many_associations_get_a_transient_local_limit_rejection(scp, raw_peer) -> None:
    """Beyond max_associations a request is rejected (transient, provider, local limit)."""
    server = scp(max_associations=1)
    first = raw_peer(server.port)
    first.associate(CT)

    async def connect() -> Association:
        return await Association.connect("127.0.0.1", server.port, called_aet="DICOMNET")

    with pytest.raises(AssociationRejected) as rejected:
        asyncio.run(connect())
    assert (rejected.value.result, rejected.value.source, rejected.value.reason) == (2, 3, 2)
    first.send(encode_release_rq())
    assert first.recv_pdu() == (A_RELEASE_RP, bytes(4))
    wait_until(lambda: server.server.active_associations == 0, message="first association over")

    async def echo() -> int:
        async with await connect() as assoc:
            return (await assoc.echo()).status

    assert asyncio.run(echo()) == 0


def test_called_aet_rejection_reaches_the_requestor_with_its_reason(scp, raw_peer) -> None:
    """The handler's rejection is sent as given: permanent, service user, called AE unknown."""

    def only_dicomnet(request: AssociationRequest) -> Rejection | None:
        return None if request.called_aet == "DICOMNET" else REJECT_CALLED_AET

    server = scp(RecordingHandler(accept=only_dicomnet))
    peer = raw_peer(server.port)
    from mercure.dicomnet.pdu import (
        AssociateRequest,
        PresentationContextProposal,
        encode_associate_rq,
    )

    proposal = PresentationContextProposal(1, VERIFICATION_SOP_CLASS, ("1.2.840.10008.1.2",))
    peer.send(encode_associate_rq(AssociateRequest("ELSEWHERE", "RAWPEER", [proposal])))
    assert peer.recv_pdu() == (A_ASSOCIATE_RJ, bytes((0, 1, 1, 7)))
    assert peer.recv_pdu() is None
    assert [str(r) for _, r in server.handler.rejected] == [
        "called AE title not recognised (permanent)"
    ]
