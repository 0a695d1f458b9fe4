"""Helpers of the dicomnet tests: a DicomServer on its own event loop in a thread (so that blocking
peers such as storescu and pynetdicom can talk to it from the test) and test-file helpers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pydicom.data

from mercure.dicomnet import AssociationHandler, DicomServer, ListenerSettings, read_file_meta
from mercure.dicomnet.dimse import decode_command, encode_c_store_rq
from mercure.dicomnet.pdu import (
    A_ASSOCIATE_AC,
    P_DATA_TF,
    PDU_HEADER,
    AssociateRequest,
    PresentationContextProposal,
    encode_associate_rq,
    encode_pdata,
    pdata_header,
)
from mercure.dicomnet.uids import EXPLICIT_VR_LITTLE_ENDIAN

T = TypeVar("T")


class ServerThread:
    """A DicomServer serving on a private event loop in a daemon thread."""

    def __init__(self, handler: AssociationHandler, settings: ListenerSettings) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = DicomServer(settings, handler)
        self.call(self.server.start())

    @property
    def port(self) -> int:
        """The listening port."""
        return self.server.port

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        """Shut the server down and end the thread."""
        self.call(self.server.shutdown(grace=1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


PYDICOM_TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def pydicom_file(name: str) -> Path:
    """A file shipped with pydicom (looked up locally: pydicom would try to download others)."""
    path = PYDICOM_TEST_FILES / name
    assert path.is_file(), f"{name} is not among pydicom's bundled test files"
    return path


def pydicom_files() -> list[Path]:
    """Every file bundled with pydicom's test data, sorted."""
    return sorted(
        p for p in PYDICOM_TEST_FILES.rglob("*") if p.is_file() and not p.name.startswith(".")
    )


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta Information."""
    return path.read_bytes()[read_file_meta(path).dataset_offset :]


def dcmtk_normalised(source: Path, folder: Path, syntax_flag: str | None = None) -> Path:
    """The file as DCMTK writes it (``dcmconv``, trailing padding off, optionally another
    transfer syntax): storescu re-encodes datasets, so this is what it puts on the wire."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    argv = [
        "dcmconv",
        "--padding-off",
        *([syntax_flag] if syntax_flag else []),
        str(source),
        str(target),
    ]
    subprocess.run(argv, check=True, capture_output=True)
    return target


class RawPeer:
    """A hand-driven requestor on a plain socket, for sending what no real peer would."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def recv_pdu(self) -> tuple[int, bytes] | None:
        """The next PDU (type, body), or None when the acceptor closed the connection."""
        header = self._recv_exactly(6)
        if header is None:
            return None
        pdu_type, length = PDU_HEADER.unpack(header)
        body = self._recv_exactly(length)
        return None if body is None else (pdu_type, body)

    def _recv_exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def associate(
        self, *sop_classes: str, syntax: str = EXPLICIT_VR_LITTLE_ENDIAN, max_pdu: int = 16384
    ) -> None:
        """Request an association with one context per SOP class (ids 1, 3, ...) and expect AC."""
        contexts = [
            PresentationContextProposal(2 * i + 1, uid, (syntax,))
            for i, uid in enumerate(sop_classes)
        ]
        self.send(
            encode_associate_rq(AssociateRequest("DICOMNET", "RAWPEER", contexts, max_pdu=max_pdu))
        )
        answer = self.recv_pdu()
        assert answer is not None and answer[0] == A_ASSOCIATE_AC, answer

    def send_store_command(
        self, context_id: int, sop_class: str, sop_instance: str, message_id: int = 1
    ) -> None:
        """Send a C-STORE-RQ command set (its dataset is up to the caller)."""
        command = encode_c_store_rq(sop_class, sop_instance, message_id)
        self.send(encode_pdata(context_id, command, command=True, max_pdu=0))

    def send_data(self, context_id: int, data: bytes, *, last: bool) -> None:
        """Send one dataset fragment in its own P-DATA-TF PDU."""
        self.send(pdata_header(context_id, len(data), command=False, last=last) + data)

    def read_response(self) -> dict[int, bytes]:
        """Read one P-DATA-TF holding a whole command set and decode it."""
        pdu = self.recv_pdu()
        assert pdu is not None and pdu[0] == P_DATA_TF, pdu
        return decode_command(pdu[1][6:])

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
