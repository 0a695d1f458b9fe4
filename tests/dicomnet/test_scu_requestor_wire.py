"""The requestor on the wire, seen by a hand-driven acceptor: PDU sizes, timeouts, bad files."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop
from dicomnet_helpers import dataset_bytes

from mercure.dicomnet import (
    Association,
    AssociationAborted,
    ContextProposal,
    DicomFileError,
    read_file_meta,
)
from mercure.dicomnet.dimse import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    C_ECHO_RSP,
    C_STORE_RSP,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    MESSAGE_ID,
    NO_DATASET,
    SUCCESS,
    command_int,
    decode_command,
    encode_response,
)
from mercure.dicomnet.pdu import (
    A_ASSOCIATE_RQ,
    A_RELEASE_RQ,
    P_DATA_TF,
    PC_ACCEPTANCE,
    PDU_HEADER,
    PDV_HEADER,
    AssociateAccept,
    PresentationContextResult,
    decode_associate_rq,
    encode_associate_ac,
    encode_pdata,
    encode_release_rp,
)
from mercure.dicomnet.requestor import SEND_BLOCK
from mercure.dicomnet.uids import VERIFICATION_SOP_CLASS
from mercure.testing.series import GeneratedSeries, generate_series


class WireAcceptor:
    """An acceptor on a plain socket in a thread: accepts every context in its first transfer
    syntax, records each P-DATA-TF PDU's length and each message, and answers success to the
    first ``answers`` requests (then stays silent)."""

    def __init__(self, max_pdu: int, answers: int = 1 << 30) -> None:
        self.max_pdu = max_pdu
        self.answers = answers
        self.pdata_lengths: list[int] = []
        self.messages: list[tuple[dict[int, bytes], bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _recv(self, sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _serve(self) -> None:
        sock, _ = self._listener.accept()
        with sock, contextlib.suppress(EOFError, OSError):  # the requestor went: done
            self._converse(sock)

    def _converse(self, sock: socket.socket) -> None:
        command = bytearray()
        dataset = bytearray()
        while True:
            pdu_type, length = PDU_HEADER.unpack(self._recv(sock, 6))
            body = self._recv(sock, length)
            if pdu_type == A_ASSOCIATE_RQ:
                request = decode_associate_rq(body)
                results = [
                    PresentationContextResult(c.context_id, PC_ACCEPTANCE, c.transfer_syntaxes[0])
                    for c in request.contexts
                ]
                accept = AssociateAccept(
                    request.called_aet, request.calling_aet, results, max_pdu=self.max_pdu
                )
                sock.sendall(encode_associate_ac(accept))
            elif pdu_type == A_RELEASE_RQ:
                sock.sendall(encode_release_rp())
                return
            elif pdu_type == P_DATA_TF:
                self.pdata_lengths.append(length)
                pos = 0
                while pos < length:
                    pdv_length, context_id, flags = PDV_HEADER.unpack_from(body, pos)
                    part = body[pos + 6 : pos + 4 + pdv_length]
                    pos += 4 + pdv_length
                    (command if flags & 1 else dataset).extend(part)
                    if not flags & 2:
                        continue
                    cmd = decode_command(bytes(command))
                    if flags & 1 and command_int(cmd, COMMAND_DATA_SET_TYPE) != NO_DATASET:
                        continue  # the dataset follows
                    self.messages.append((cmd, bytes(dataset)))
                    command.clear()
                    dataset.clear()
                    if len(self.messages) <= self.answers:
                        sock.sendall(self._answer(context_id, cmd))

    def _answer(self, context_id: int, cmd: dict[int, bytes]) -> bytes:
        field = C_ECHO_RSP if command_int(cmd, COMMAND_FIELD) == 0x0030 else C_STORE_RSP
        message_id = command_int(cmd, MESSAGE_ID) or 0
        response = encode_response(
            field,
            message_id,
            SUCCESS,
            cmd[AFFECTED_SOP_CLASS_UID],
            cmd.get(AFFECTED_SOP_INSTANCE_UID),
        )
        return encode_pdata(context_id, response, command=True, max_pdu=0)

    def close(self) -> None:
        """Stop listening (a conversation in progress ends with its socket)."""
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def wire() -> Iterator[list[WireAcceptor]]:
    """Acceptors started by a test, closed afterwards."""
    started: list[WireAcceptor] = []
    yield started
    for acceptor in started:
        acceptor.close()


def contexts_for(*paths: Path) -> list[ContextProposal]:
    """Verification and one context per (SOP class, transfer syntax) of ``paths``."""
    metas = {(m.sop_class_uid, m.transfer_syntax_uid) for m in map(read_file_meta, paths)}
    return [ContextProposal(VERIFICATION_SOP_CLASS)] + [
        ContextProposal(sop_class, (syntax,)) for sop_class, syntax in sorted(metas)
    ]


def test_every_pdu_fits_the_peers_maximum_whatever_the_instance_size(
    wire: list[WireAcceptor], tiny_series: GeneratedSeries, ct_series: GeneratedSeries
) -> None:
    """Small files, a streamed large file and an in-memory dataset: no P-DATA-TF over the
    peer's maximum, and each message arrives whole."""
    acceptor = WireAcceptor(max_pdu=16384)
    wire.append(acceptor)
    small, large = tiny_series.paths[0], ct_series.paths[0]
    memory = dataset_bytes(large)
    meta = read_file_meta(large)

    async def send() -> list[int]:
        async with await Association.connect(
            "127.0.0.1", acceptor.port, called_aet="WIRE", contexts=contexts_for(small, large)
        ) as assoc:
            statuses = [(await assoc.store_file(p)).status for p in (small, large, small)]
            response = await assoc.store_dataset(
                meta.sop_class_uid, "1.2.3.4", meta.transfer_syntax_uid, memory
            )
            return [*statuses, response.status]

    assert asyncio.run(send()) == [SUCCESS] * 4
    assert max(acceptor.pdata_lengths) <= 16384
    datasets = [data for _, data in acceptor.messages]
    assert datasets == [dataset_bytes(small), memory, dataset_bytes(small), memory]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_instance_larger_than_a_send_block_arrives_whole_in_pdus_within_the_maximum(
    wire: list[WireAcceptor], tmp_path: Path, loop: str
) -> None:
    """A 2.5 MB file (streamed in blocks, the last one partial) and the same dataset from
    memory arrive byte-exact, no P-DATA-TF over the peer's maximum, on both event loops."""
    acceptor = WireAcceptor(max_pdu=16384)
    wire.append(acceptor)
    (large,) = generate_series(tmp_path / "large", "ct", 1, size=(1100, 1150)).paths
    memory = dataset_bytes(large)
    assert len(memory) > 2 * SEND_BLOCK
    meta = read_file_meta(large)

    async def send() -> list[int]:
        async with await Association.connect(
            "127.0.0.1", acceptor.port, called_aet="WIRE", contexts=contexts_for(large)
        ) as assoc:
            stored = await assoc.store_file(large)
            response = await assoc.store_dataset(
                meta.sop_class_uid, "1.2.3.4", meta.transfer_syntax_uid, memory
            )
            return [stored.status, response.status]

    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(send()) == [SUCCESS] * 2
    assert max(acceptor.pdata_lengths) <= 16384
    assert [data for _, data in acceptor.messages] == [memory, memory]


def test_store_files_yields_each_outcome_in_order_and_sends_the_next_only_when_asked(
    wire: list[WireAcceptor],
    tiny_series: GeneratedSeries,
    tmp_path: Path,
) -> None:
    """Small files, a missing one, one without an accepted context and one streamed in blocks:
    an outcome per file in order, the good ones byte-exact, and no request leaves before the
    caller asked for the next outcome (the answer before is recorded first)."""
    acceptor = WireAcceptor(max_pdu=16384)
    wire.append(acceptor)
    first, second = tiny_series.paths[:2]
    (large,) = generate_series(tmp_path / "large", "ct", 1, size=(1100, 1150)).paths
    mr = generate_series(tmp_path / "mr", "mr", 1).paths[0]
    files = [first, tmp_path / "missing.dcm", mr, large, second]

    async def send() -> list[object]:
        outcomes: list[object] = []
        async with await Association.connect(
            "127.0.0.1", acceptor.port, called_aet="WIRE", contexts=contexts_for(first, large)
        ) as assoc:
            async for index, outcome in assoc.store_files([(p, None) for p in files]):
                assert index == len(outcomes)
                received = len(acceptor.messages)
                outcomes.append((received, outcome))
        return outcomes

    outcomes = asyncio.run(send())
    received = [count for count, _ in outcomes]
    results = [getattr(o, "status", type(o).__name__) for _, o in outcomes]
    assert results == [
        SUCCESS, "DicomFileError", "PresentationContextError", SUCCESS, SUCCESS
    ]  # fmt: skip
    assert received == [1, 1, 1, 2, 3]
    assert [data for _, data in acceptor.messages] == [
        dataset_bytes(first), dataset_bytes(large), dataset_bytes(second)
    ]  # fmt: skip


def test_a_peer_that_never_answers_costs_the_association_after_the_dimse_timeout(
    wire: list[WireAcceptor], tiny_series: GeneratedSeries
) -> None:
    """The first request is answered, the second never: AssociationAborted once the timeout
    has passed since the second was sent (not since the first)."""
    acceptor = WireAcceptor(max_pdu=16384, answers=1)
    wire.append(acceptor)
    path = tiny_series.paths[0]

    async def send() -> float:
        assoc = await Association.connect(
            "127.0.0.1",
            acceptor.port,
            called_aet="WIRE",
            contexts=contexts_for(path),
            dimse_timeout=0.5,
        )
        assert (await assoc.store_file(path)).ok
        started = time.monotonic()
        with pytest.raises(AssociationAborted, match=r"sent no response within 0\.5 s"):
            await assoc.store_file(path)
        assert not assoc.is_open
        return time.monotonic() - started

    assert asyncio.run(send()) >= 0.45


@pytest.mark.parametrize("kind", ["directory", "not_dicom", "missing"])
def test_an_unusable_file_raises_and_the_association_goes_on(
    wire: list[WireAcceptor], tiny_series: GeneratedSeries, tmp_path: Path, kind: str
) -> None:
    """A directory, a non-DICOM file or a missing file raises DicomFileError before anything is
    sent; the next instance on the same association is stored."""
    acceptor = WireAcceptor(max_pdu=16384)
    wire.append(acceptor)
    good = tiny_series.paths[0]
    bad = tmp_path / kind
    if kind == "directory":
        bad.mkdir()
    elif kind == "not_dicom":
        bad.write_bytes(b"plain text, no preamble" * 10)

    async def send() -> int:
        async with await Association.connect(
            "127.0.0.1", acceptor.port, called_aet="WIRE", contexts=contexts_for(good)
        ) as assoc:
            with pytest.raises(DicomFileError, match=kind):
                await assoc.store_file(bad)
            return (await assoc.store_file(good)).status

    assert asyncio.run(send()) == SUCCESS
    assert [data for _, data in acceptor.messages] == [dataset_bytes(good)]


def test_store_file_with_the_meta_already_read_sends_the_same_bytes(
    wire: list[WireAcceptor], tiny_series: GeneratedSeries, ct_series: GeneratedSeries
) -> None:
    """Given the File Meta Information a sender read to propose its contexts, a small file and
    a streamed large one arrive exactly as without it."""
    acceptor = WireAcceptor(max_pdu=16384)
    wire.append(acceptor)
    small, large = tiny_series.paths[0], ct_series.paths[0]

    async def send() -> list[int]:
        async with await Association.connect(
            "127.0.0.1", acceptor.port, called_aet="WIRE", contexts=contexts_for(small, large)
        ) as assoc:
            return [
                (await assoc.store_file(p, meta=read_file_meta(p))).status for p in (small, large)
            ]

    assert asyncio.run(send()) == [SUCCESS] * 2
    assert [data for _, data in acceptor.messages] == [dataset_bytes(small), dataset_bytes(large)]


def test_store_file_refuses_a_file_shorter_than_the_meta_read_before(
    wire: list[WireAcceptor], tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """A file cut below the dataset offset its earlier-read meta names raises DicomFileError
    naming it, nothing is sent, and the association goes on."""
    acceptor = WireAcceptor(max_pdu=16384)
    wire.append(acceptor)
    good = tiny_series.paths[0]
    meta = read_file_meta(good)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(good.read_bytes()[: meta.dataset_offset - 10])

    async def send() -> int:
        async with await Association.connect(
            "127.0.0.1", acceptor.port, called_aet="WIRE", contexts=contexts_for(good)
        ) as assoc:
            with pytest.raises(DicomFileError, match=r"cut\.dcm shrank"):
                await assoc.store_file(cut, meta=meta)
            return (await assoc.store_file(good)).status

    assert asyncio.run(send()) == SUCCESS
    assert [data for _, data in acceptor.messages] == [dataset_bytes(good)]
