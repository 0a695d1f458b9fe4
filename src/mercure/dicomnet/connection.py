"""PDU framing on asyncio, shared by acceptor and requestor: the receive hot path.

The protocol reads straight into its own buffer (``BufferedProtocol``: one ``recv_into`` per
readiness event, no intermediate bytes objects), walks P-DATA-TF PDUs and their PDVs in place,
and hands dataset bytes on as memoryview slices of that buffer: zero copies between the socket
and the application's sink. Nothing here awaits per fragment; when the application needs time
to finish a message (an fsync), parsing is halted and resumed (:meth:`halt`, :meth:`resume`),
which keeps the strict request/response order without a coroutine per association.

Subclasses implement :meth:`_on_pdu` (association PDUs, whole), :meth:`_on_command` (a complete
command set), :meth:`_on_data` (dataset fragments) and :meth:`_on_dataset_end`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

from mercure.dicomnet.pdu import (
    A_ABORT,
    A_ASSOCIATE_RQ,
    ABORT_REASON_INVALID_PARAMETER,
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_REASON_UNEXPECTED_PARAMETER,
    ABORT_REASON_UNEXPECTED_PDU,
    ABORT_REASON_UNRECOGNIZED_PDU,
    ABORT_SOURCE_PROVIDER,
    P_DATA_TF,
    PDU_HEADER,
    PDV_HEADER,
    PduError,
    encode_abort,
)

log = logging.getLogger(__name__)

MAX_ASSOCIATION_PDU = 1 << 20
"""Largest non-P-DATA PDU accepted (an A-ASSOCIATE-RQ with 128 contexts of 30 syntaxes ~100 KiB)."""

MAX_COMMAND_SET = 1 << 16
"""Largest command set accepted; real ones are a few hundred bytes."""

_MIN_FREE = 65536
_PDATA_SLACK = 64
"""P-DATA PDUs up to this many bytes over our maximum are tolerated: some peers count the header."""


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle on a transport's socket: without it every DIMSE exchange waits for a
    delayed ACK (~40 ms) and a C-STORE link drops to about 20 instances/s."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class UpperLayerConnection(asyncio.BufferedProtocol):
    """Frames PDUs of one TCP connection and dispatches them to the subclass."""

    def __init__(self, *, max_pdu: int, read_buffer_size: int) -> None:
        self._max_pdu = max_pdu
        self._pdata_limit = (max_pdu + _PDATA_SLACK) if max_pdu else 0xFFFFFFFF
        self._buf = bytearray(read_buffer_size)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._need = 0
        self._pdu_left = 0
        self._pdv_left = 0
        self._pdv_command = False
        self._pdv_last = False
        self._command = bytearray()
        self._message_context = 0
        self._expect_dataset = False
        self._pdata_allowed = False
        self._halted = False
        self._reading_paused = False
        self._closing = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._pdu_since = 0.0
        """When the PDU being received began to arrive (loop time); 0.0 between PDUs. Set by
        the subclass's :meth:`_on_bytes_received`, cleared here when a PDU is complete."""
        self.transport: asyncio.Transport | None = None

    # --- hooks for subclasses --------------------------------------------------------------

    def _on_pdu(self, pdu_type: int, body: bytes) -> None:
        raise NotImplementedError

    def _on_command(self, context_id: int, command: bytes) -> bool:
        """Handle a complete command set; return True when a dataset follows."""
        raise NotImplementedError

    def _on_data(self, chunk: memoryview) -> None:
        raise NotImplementedError

    def _on_dataset_end(self, context_id: int) -> None:
        raise NotImplementedError

    def _on_protocol_error(self, error: PduError) -> None:
        """The peer broke the protocol: abort (subclasses add bookkeeping)."""
        self.send_abort(ABORT_SOURCE_PROVIDER, error.abort_reason)

    # --- asyncio protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        set_nodelay(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self._buf) - self._end < _MIN_FREE or self._need > len(self._buf) - self._start:
            self._make_room()
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        self._on_bytes_received()
        if self._halted:
            if (
                len(self._buf) - self._end < _MIN_FREE
                and not self._reading_paused
                and self.transport
            ):
                self._reading_paused = True
                self.transport.pause_reading()
            return
        self._parse()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_bytes_received(self) -> None:
        """Called for every read; subclasses note the time for their idle timer and, when
        ``_pdu_since`` is 0.0, the time a new PDU began (for a PDU deadline)."""

    # --- flow control ----------------------------------------------------------------------

    def halt(self) -> None:
        """Stop parsing after the current message part, until :meth:`resume`."""
        self._halted = True

    def resume(self) -> None:
        """Parse what arrived while halted, then read again."""
        self._halted = False
        if not self._closing:
            self._parse()
        if self._reading_paused and not self._halted and self.transport and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self._write_paused and not self._closing:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter
            self._drain_waiter = None

    # --- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send bytes unless the connection is closing (then they are dropped)."""
        if not self._closing and self.transport is not None:
            self.transport.write(data)

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        """Send several buffers as one gathered write, unless the connection is closing."""
        if not self._closing and self.transport is not None:
            self.transport.writelines(parts)

    def send_abort(self, source: int, reason: int) -> None:
        """Send A-ABORT and close the connection once it has gone out."""
        if not self._closing and self.transport is not None:
            self.transport.write(encode_abort(source, reason))
            self.close()

    def close(self) -> None:
        """Close after pending writes; nothing more is parsed."""
        self._closing = True
        self._pdata_allowed = False
        if self.transport is not None:
            self.transport.close()

    def force_close(self) -> None:
        """Close now, dropping unsent data."""
        self._closing = True
        self._pdata_allowed = False
        if self.transport is not None:
            self.transport.abort()

    @property
    def closing(self) -> bool:
        """True once the connection is closing or closed."""
        return self._closing

    # --- parsing ---------------------------------------------------------------------------

    def _make_room(self) -> None:
        pending = self._end - self._start
        needed = max(self._need, pending + _MIN_FREE)
        if needed > len(self._buf):
            # Not resized in place: the application may still hold views of the old buffer.
            grown = bytearray(max(needed, 2 * len(self._buf)))
            grown[:pending] = self._view[self._start : self._end]
            self._buf = grown
            self._view = memoryview(grown)
        elif self._start:
            self._buf[:pending] = self._buf[self._start : self._end]
        self._start = 0
        self._end = pending

    def _parse(self) -> None:
        view = self._view
        pos = self._start
        end = self._end
        try:
            while not self._halted and not self._closing:
                avail = end - pos
                pdv_left = self._pdv_left
                if pdv_left:
                    if not avail:
                        break
                    n = pdv_left if pdv_left <= avail else avail
                    self._pdv_left = pdv_left = pdv_left - n
                    if self._pdv_command:
                        self._command += view[pos : pos + n]
                    else:
                        self._on_data(view[pos : pos + n])
                    pos += n
                    if not pdv_left and self._pdv_last:
                        self._start = pos
                        self._message_part_complete()
                    continue
                if self._pdu_left:
                    if avail < 6:
                        break
                    length, context_id, flags = PDV_HEADER.unpack_from(view, pos)
                    pos += 6
                    if length < 2 or length + 4 > self._pdu_left:
                        raise PduError("PDV item does not fit its P-DATA-TF PDU")
                    self._pdu_left -= length + 4
                    self._begin_pdv(context_id, flags, length - 2)
                    if length == 2 and self._pdv_last:
                        self._start = pos
                        self._message_part_complete()
                    continue
                if avail < 6:
                    break
                pdu_type, length = PDU_HEADER.unpack_from(view, pos)
                if pdu_type == P_DATA_TF:
                    if not self._pdata_allowed:
                        raise PduError(
                            "P-DATA-TF outside an association", ABORT_REASON_UNEXPECTED_PDU
                        )
                    if length < 6 or length > self._pdata_limit:
                        raise PduError(f"P-DATA-TF PDU of invalid length {length}")
                    pos += 6
                    self._pdu_left = length
                    continue
                if not A_ASSOCIATE_RQ <= pdu_type <= A_ABORT:
                    raise PduError(
                        f"unknown PDU type 0x{pdu_type:02X}", ABORT_REASON_UNRECOGNIZED_PDU
                    )
                if length > MAX_ASSOCIATION_PDU:
                    raise PduError(f"PDU type 0x{pdu_type:02X} of {length} bytes is too long")
                if avail < 6 + length:
                    self._need = 6 + length
                    break
                self._need = 0
                body = bytes(view[pos + 6 : pos + 6 + length])
                pos += 6 + length
                self._start = pos
                self._on_pdu(pdu_type, body)
        except PduError as exc:
            self._start = self._end = 0
            self._on_protocol_error(exc)
            return
        except Exception as exc:
            # A bug of ours must cost one association, never the service: abort, log loudly.
            log.exception("internal error while handling data from the peer; aborting")
            self._start = self._end = 0
            self._on_protocol_error(PduError(f"internal error: {exc}", ABORT_REASON_NOT_SPECIFIED))
            return
        if self._closing:
            return
        if pos == end and not self._pdu_left and not self._pdv_left:
            self._pdu_since = 0.0
        if pos == end and not self._halted:
            self._start = self._end = 0
        else:
            self._start = pos

    def _begin_pdv(self, context_id: int, flags: int, data_length: int) -> None:
        command = bool(flags & 0x01)
        if not self._message_context:
            if not command:
                raise PduError(
                    "dataset fragment without a command", ABORT_REASON_UNEXPECTED_PARAMETER
                )
            self._message_context = context_id
        elif context_id != self._message_context:
            raise PduError(
                "PDV for another presentation context inside a message",
                ABORT_REASON_UNEXPECTED_PARAMETER,
            )
        if command:
            if self._expect_dataset:
                raise PduError(
                    "command fragment where dataset expected", ABORT_REASON_UNEXPECTED_PARAMETER
                )
            if len(self._command) + data_length > MAX_COMMAND_SET:
                raise PduError("command set too long", ABORT_REASON_INVALID_PARAMETER)
        elif not self._expect_dataset:
            raise PduError(
                "dataset fragment where none expected", ABORT_REASON_UNEXPECTED_PARAMETER
            )
        self._pdv_command = command
        self._pdv_last = bool(flags & 0x02)
        self._pdv_left = data_length

    def _message_part_complete(self) -> None:
        context_id = self._message_context
        if self._pdv_command:
            command = bytes(self._command)
            self._command.clear()
            self._expect_dataset = self._on_command(context_id, command)
            if not self._expect_dataset:
                self._message_context = 0
        else:
            self._expect_dataset = False
            self._message_context = 0
            self._on_dataset_end(context_id)

    @property
    def in_dataset(self) -> bool:
        """True while a dataset is expected or being received."""
        return self._expect_dataset


def peer_address(transport: asyncio.BaseTransport) -> tuple[str, int]:
    """(host, port) of the remote end, ('', 0) when unknown."""
    peer: Any = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return "", 0
