"""A sink whose finish() takes its time (an fsync): order, back-pressure, late close, shutdown."""

from __future__ import annotations

import asyncio
import threading

from dicomnet_helpers import RawPeer, ServerThread

from mercure.dicomnet import StoreContext
from mercure.dicomnet.dimse import STATUS, command_int
from mercure.dicomnet.pdu import A_ABORT, A_RELEASE_RP, encode_release_rq
from mercure.dicomnet.recording import RecordingHandler, RecordingSink
from mercure.testing.wait import wait_until

CT = "1.2.840.10008.5.1.4.1.1.2"


class GatedHandler(RecordingHandler):
    """Sinks whose finish() waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = 0

    def open_store(self, context: StoreContext) -> RecordingSink:
        return GatedSink(self, context)


class GatedSink(RecordingSink):
    def __init__(self, handler: GatedHandler, context: StoreContext) -> None:
        super().__init__(handler, context)
        self.gated = handler

    async def finish(self) -> int:  # type: ignore[override]
        with self.gated.lock:
            self.gated.waiting += 1
        await asyncio.get_running_loop().run_in_executor(None, self.gated.gate.wait, 10)
        return super().finish()


def store(peer: RawPeer, uid: str, payload: bytes, message_id: int = 1) -> None:
    peer.send_store_command(1, CT, uid, message_id)
    peer.send_data(1, payload, last=True)


def test_requests_sent_ahead_wait_for_the_answer_to_the_first(scp, raw_peer) -> None:
    """A second C-STORE (2 MB) and a release sent before the first answer are handled in order."""
    handler = GatedHandler()
    server: ServerThread = scp(handler, max_pdu=4 << 20)
    peer: RawPeer = raw_peer(server.port)
    peer.associate(CT, max_pdu=16384)
    first, second = b"first-dataset", bytes(range(256)) * 8192
    store(peer, "1.2.1", first, 1)
    wait_until(lambda: handler.waiting == 1, message="first finish pending")
    store(peer, "1.2.2", second, 2)
    peer.send(encode_release_rq())
    handler.gate.set()
    assert command_int(peer.read_response(), STATUS) == 0
    assert command_int(peer.read_response(), STATUS) == 0
    assert peer.recv_pdu() == (A_RELEASE_RP, bytes(4))
    assert [i.dataset for i in handler.instances] == [first, second]
    stats = wait_until(lambda: handler.closed)[0]
    assert stats.released and stats.instances_stored == 2


def test_connection_lost_while_finishing_still_counts_the_instance(scp, raw_peer) -> None:
    """The sender vanishes during finish(): the instance is kept, reported when done, and a
    shutdown meanwhile waits for the application to finish."""
    handler = GatedHandler()
    server: ServerThread = scp(handler)
    peer: RawPeer = raw_peer(server.port)
    peer.associate(CT)
    store(peer, "1.2.3", b"complete-dataset")
    wait_until(lambda: handler.waiting == 1, message="finish pending")
    peer.close()
    shutdown = asyncio.run_coroutine_threadsafe(server.server.shutdown(grace=10), server.loop)
    assert not shutdown.done() and handler.closed == []
    handler.gate.set()
    shutdown.result(10)
    stats = wait_until(lambda: handler.closed, message="closed after finish")[0]
    assert stats.outcome == "connection_lost" and stats.instances_stored == 1
    assert handler.aborted == [] and len(handler.instances) == 1


def test_shutdown_aborts_open_associations_and_their_partial_sinks(scp, raw_peer) -> None:
    """Server shutdown after the grace period: A-ABORT to the peer, partial sink aborted."""
    server: ServerThread = scp()
    peer: RawPeer = raw_peer(server.port)
    peer.associate(CT)
    peer.send_store_command(1, CT, "1.2.4")
    peer.send_data(1, bytes(100), last=False)
    wait_until(lambda: server.handler.opened, message="association open")
    server.call(server.server.shutdown(grace=0.1))
    pdu = peer.recv_pdu()
    assert pdu is not None and pdu[0] == A_ABORT
    stats = wait_until(lambda: server.handler.closed)[0]
    assert stats.outcome == "aborted_locally" and "shutting down" in stats.reason
    assert [c.sop_instance_uid for c in server.handler.aborted] == ["1.2.4"]
