"""Slow senders cannot hold a listener: a PDU must complete within ``pdu_timeout`` of its first
byte, and an association may last at most ``max_association_duration`` (real sockets, one
byte at a time, against a real receiver)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mercure.dicomnet.dimse import encode_c_echo_rq, encode_c_store_rq
from mercure.dicomnet.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    PDU_HEADER,
    AssociateRequest,
    PresentationContextProposal,
    encode_associate_rq,
    encode_pdata,
    pdata_header,
)
from mercure.dicomnet.uids import EXPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS
from mercure.testing.peers import storescu
from mercure.testing.receiver import RunningReceiver
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.peers

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CLOSED_WITHIN = 60.0
"""Upper bound for a socket read while waiting for the receiver to drop a slow sender: far
above any limit these tests configure, so it only ends a test that would otherwise hang."""


class SlowSender:
    """A requestor on a plain socket that associates normally, then misbehaves slowly."""

    def __init__(self, port: int, calling_aet: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CLOSED_WITHIN)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        contexts = [
            PresentationContextProposal(1, CT_IMAGE_STORAGE, (EXPLICIT_VR_LITTLE_ENDIAN,)),
            PresentationContextProposal(3, VERIFICATION_SOP_CLASS, (EXPLICIT_VR_LITTLE_ENDIAN,)),
        ]
        self.sock.sendall(encode_associate_rq(AssociateRequest("MERCURE", calling_aet, contexts)))
        pdu_type, _ = self.recv_pdu()
        assert pdu_type == A_ASSOCIATE_AC
        self.answer = b""

    def recv_pdu(self) -> tuple[int, bytes]:
        """The next PDU from the receiver."""
        header = self._recv(6)
        pdu_type, length = PDU_HEADER.unpack(header)
        return pdu_type, self._recv(length)

    def _recv(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "connection closed mid-PDU"
            data += chunk
        return data

    def _closed_by_receiver(self, wait: float) -> bool:
        """Whether the receiver has answered or closed (what it sent is kept in ``answer``)."""
        readable, _, _ = select.select([self.sock], [], [], wait)
        if not readable:
            return False
        try:
            while chunk := self.sock.recv(65536):
                self.answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return True

    def drip(self, data: bytes, interval: float) -> bool:
        """Send ``data`` one byte every ``interval`` s; True when the receiver closed the
        connection before the last byte."""
        for i in range(len(data) - 1):
            try:
                self.sock.send(data[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return True
            if self._closed_by_receiver(interval):
                return True
        return False  # the last byte is not sent: the receiver would answer, not close

    def drip_dataset(self, interval: float, size: int = 400) -> bool:
        """Start a C-STORE (command at once), announce a dataset PDU of ``size`` bytes and
        send it one byte at a time; True when the receiver closed the connection first."""
        command = encode_c_store_rq(CT_IMAGE_STORAGE, "1.2.826.0.1.3680043.10.1234.1", 1)
        self.sock.sendall(encode_pdata(1, command, command=True, max_pdu=0))
        self.sock.sendall(pdata_header(1, size, command=False, last=True))
        return self.drip(bytes(size), interval)

    def echo_every(self, interval: float, limit: int = 200) -> bool:
        """Send a C-ECHO (whole PDUs, promptly answered) every ``interval`` s; True when the
        receiver closed the connection."""
        for message_id in range(1, limit):
            try:
                self.sock.sendall(
                    encode_pdata(3, encode_c_echo_rq(message_id), command=True, max_pdu=0)
                )
            except (BrokenPipeError, ConnectionResetError):
                return True
            pdu_type, _ = self.recv_pdu()
            if pdu_type == A_ABORT:
                return True
            if self._closed_by_receiver(interval):
                return True
        return False

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def aborted(answer: bytes) -> bool:
    """Whether what the receiver sent last ends with an A-ABORT PDU."""
    return len(answer) >= 10 and answer[-10] == A_ABORT


def test_slow_drip_senders_are_dropped_and_the_listener_serves_storescu(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """Two senders dripping one byte every 50 ms into a dataset PDU fill a two-association
    listener; each is aborted once its PDU is 0.5 s old, and storescu is then served."""
    receiver = receiver_factory(listener={"max_associations": 2, "pdu_timeout": 0.5})
    senders = [SlowSender(receiver.port, f"DRIP{i}") for i in range(2)]
    results: dict[int, bool] = {}

    def drip(i: int) -> None:
        results[i] = senders[i].drip_dataset(interval=0.05)

    threads = [threading.Thread(target=drip, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: True, 1: True}
    assert all(aborted(sender.answer) for sender in senders)
    for sender in senders:
        sender.close()
    log = receiver.log_text()
    for i in range(2):
        [line] = [line for line in log.splitlines() if f"DRIP{i}@127.0.0.1" in line]
        assert "WARNING" in line and "pdu_timeout" in line
    wait_until(lambda: receiver.staging_files() == [], message="partial files removed")
    series = generate_series(tmp_path / "in", kind="tiny", count=3)
    storescu(receiver.port, series.folder, called_aet="MERCURE")
    assert len(receiver.instances()) == 3


def test_sender_keeping_an_association_busy_is_dropped_after_the_maximum_duration(
    receiver_factory: Callable[..., RunningReceiver],
) -> None:
    """C-ECHO every 50 ms keeps every PDU short and the association never idle: the
    association is aborted once it is older than max_association_duration."""
    receiver = receiver_factory(listener={"max_association_duration": 1.0})
    sender = SlowSender(receiver.port, "CHATTY")
    assert sender.echo_every(0.05)
    sender.close()
    [line] = [line for line in receiver.log_text().splitlines() if "CHATTY@127.0.0.1" in line]
    assert "WARNING" in line and "max_association_duration" in line


def test_large_transfer_is_not_affected_by_short_pdu_deadline(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """Several 32 MB instances on one association, with small PDUs and a 0.2 s PDU deadline:
    the deadline is per PDU, so a transfer of any length at a normal rate goes through."""
    receiver = receiver_factory(listener={"pdu_timeout": 0.2}, receiver={"max_pdu": 16384})
    series = generate_series(tmp_path / "big", kind="ct", count=4, size=(4096, 4096))
    started = time.monotonic()
    storescu(receiver.port, series.folder, called_aet="MERCURE")
    elapsed = time.monotonic() - started
    assert len(receiver.instances()) == 4
    assert "pdu_timeout" not in receiver.log_text()
    # Not a timing assertion: it says the test did exercise a transfer longer than the deadline.
    print(f"4 x 32 MB in {elapsed:.2f} s with pdu_timeout 0.2 s")
