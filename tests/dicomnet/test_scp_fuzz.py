"""Fuzzing the acceptor with hypothesis: random and mutated PDU streams over real sockets.

Invariants: the event loop never reports an error (the ``scp`` fixture checks), the server keeps
serving, and every sink it opened was either finished or aborted (no partial file left behind).
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from dicomnet_helpers import ServerThread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercure.dicomnet import Association, StoreContext
from mercure.dicomnet.dimse import encode_c_echo_rq, encode_c_store_rq
from mercure.dicomnet.pdu import (
    AssociateRequest,
    PresentationContextProposal,
    encode_associate_rq,
    encode_pdata,
    encode_release_rq,
    pdata_header,
)
from mercure.dicomnet.recording import RecordingHandler, RecordingSink
from mercure.dicomnet.uids import EXPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS
from mercure.testing.wait import wait_until

CT = "1.2.840.10008.5.1.4.1.1.2"
FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class CountingHandler(RecordingHandler):
    """Counts the sinks it opens, so that tests can check each was finished or aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.opened_sinks = 0

    def open_store(self, context: StoreContext) -> RecordingSink:
        with self.lock:
            self.opened_sinks += 1
        return super().open_store(context)


def valid_stream() -> bytes:
    """An association that stores one instance in three fragments, echoes, and releases."""
    contexts = [
        PresentationContextProposal(1, CT, (EXPLICIT_VR_LITTLE_ENDIAN,)),
        PresentationContextProposal(3, VERIFICATION_SOP_CLASS, (EXPLICIT_VR_LITTLE_ENDIAN,)),
    ]
    parts = [
        encode_associate_rq(AssociateRequest("DICOMNET", "FUZZER", contexts, max_pdu=16384)),
        encode_pdata(1, encode_c_store_rq(CT, "1.2.3.4", 1), command=True, max_pdu=64),
    ]
    for index, fragment in enumerate(
        (b"\x08\x00\x18\x00UI\x08\x001.2.3.4\x00", bytes(300), bytes(17))
    ):
        parts.append(pdata_header(1, len(fragment), command=False, last=index == 2) + fragment)
    parts.append(encode_pdata(3, encode_c_echo_rq(2), command=True, max_pdu=0))
    parts.append(encode_release_rq())
    return b"".join(parts)


VALID = valid_stream()


def deliver(server: ServerThread, data: bytes) -> None:
    """Send bytes on a fresh connection, read until the server is done, close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
    wait_until(lambda: server.server.connections == 0, message="server closed the connection")


def assert_server_healthy(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    internal = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not internal, f"internal errors: {internal[:3]}"
    handler = server.handler
    assert isinstance(handler, CountingHandler)
    with handler.lock:
        assert handler.opened_sinks == len(handler.instances) + len(handler.aborted)

    async def echo() -> int:
        async with await Association.connect(
            "127.0.0.1", server.port, called_aet="DICOMNET"
        ) as assoc:
            return (await assoc.echo()).status

    assert asyncio.run(echo()) == 0


def test_unmutated_stream_stores_one_instance(scp) -> None:
    """The fuzzers' seed stream is valid: it stores one instance and echoes."""
    server = scp(CountingHandler())
    deliver(server, VALID)
    assert [i.context.sop_instance_uid for i in server.handler.instances] == ["1.2.3.4"]
    assert server.handler.echoes == 1


def test_random_bytes_never_crash_the_acceptor(scp, caplog: pytest.LogCaptureFixture) -> None:
    """Arbitrary bytes on a connection are aborted or ignored; the server keeps serving."""
    server = scp(CountingHandler())

    @FUZZ_SETTINGS
    @given(
        data=st.one_of(
            st.binary(max_size=600), st.binary(min_size=1, max_size=20).map(lambda b: b"\x01" + b)
        )
    )
    def run(data: bytes) -> None:
        deliver(server, data)

    run()
    assert_server_healthy(server, caplog)


def test_mutated_store_streams_never_crash_and_leave_no_open_sink(
    scp, caplog: pytest.LogCaptureFixture
) -> None:
    """Flipped, cut and spliced C-STORE streams: every opened sink ends finished or aborted."""
    server = scp(CountingHandler())

    @FUZZ_SETTINGS
    @given(
        flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=4),
        cut=st.integers(0, len(VALID)),
        splice=st.binary(max_size=16),
    )
    def run(flips: list[tuple[int, int]], cut: int, splice: bytes) -> None:
        data = bytearray(VALID)
        for position, value in flips:
            data[position] = value
        deliver(
            server, bytes(data[:cut]) + splice + bytes(data[cut:]) if splice else bytes(data[:cut])
        )

    run()
    assert_server_healthy(server, caplog)
