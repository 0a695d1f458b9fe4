"""The association requestor (SCU): C-ECHO and C-STORE towards a peer, files streamed from disk;
C-FIND, C-MOVE and C-GET through the operations of ``find`` and ``retrieve``.

One request at a time (no asynchronous operations window). Datasets are read from their file
in blocks of whole PDUs (up to 1 MiB) straight after the File Meta Information, so a 1 GB
instance costs no more memory than a block or two; a file up to a block is read whole with one
read. Each block's PDUs leave in one gathered write (headers and views of the block, no copy).

The per-request path is lean because small instances are bound by it: the command set and the
first dataset PDUs leave in one socket write, and the DIMSE timeout is one deadline checked by a
single long-lived timer rather than a timer (and ``wait_for`` wrapper) per request.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mercure.dicomnet import dimse
from mercure.dicomnet.connection import UpperLayerConnection, peer_address
from mercure.dicomnet.errors import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    DicomFileError,
    PresentationContextError,
)
from mercure.dicomnet.filemeta import FileMeta, read_file_meta_from
from mercure.dicomnet.find import FindOperation
from mercure.dicomnet.handler import AssociationInfo, StoreContext, StoreSink
from mercure.dicomnet.negotiation import AcceptedContext, ContextProposal
from mercure.dicomnet.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_REASON_UNEXPECTED_PDU,
    ABORT_SOURCE_SERVICE_USER,
    PC_ACCEPTANCE,
    AssociateAccept,
    AssociateRequest,
    PduError,
    PresentationContextProposal,
    RoleSelection,
    decode_abort,
    decode_associate_ac,
    decode_associate_rj,
    describe_abort,
    describe_rejection,
    encode_associate_rq,
    encode_pdata,
    encode_release_rp,
    encode_release_rq,
    pdata_header,
)
from mercure.dicomnet.retrieve import (
    Model,
    ProgressCallback,
    RetrieveOperation,
    RetrieveResult,
    encode_identifier,
    find_class,
    get_class,
    move_class,
)
from mercure.dicomnet.uids import VERIFICATION_SOP_CLASS

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

MAX_SEND_PDU = 1 << 20
"""Largest PDU we send, also when the peer advertises no limit (0)."""

SEND_BLOCK = 1 << 20
"""Dataset bytes read and written at once: files up to this size are read whole, larger ones
in blocks of whole PDUs, each block's PDUs in one gathered write."""


@dataclass(frozen=True, slots=True)
class DimseResponse:
    """A peer's answer to a request."""

    status: int
    error_comment: str = ""

    @property
    def ok(self) -> bool:
        """True for success and warning statuses (the peer has the instance)."""
        return dimse.is_success(self.status)


_SUCCESS = DimseResponse(dimse.SUCCESS)
"""The common answer, shared: responses are immutable."""


_JOIN_BELOW = 65536
"""Dataset bytes up to which a message's PDUs are joined into one buffer before writing."""


@dataclass(slots=True)
class _Prepared:
    """A C-STORE request read and framed ahead of its turn: ``parts`` leave in one write."""

    message_id: int
    parts: list[bytes | memoryview]


T = TypeVar("T")


class _Operation(Protocol[T]):
    """A request answered by a stream of messages (C-FIND, C-MOVE, C-GET): while installed on
    the connection it gets every message, and ``done`` gets its outcome."""

    message_id: int
    context: AcceptedContext
    done: asyncio.Future[T]
    finishing: asyncio.Task[None] | None

    def on_command(self, context_id: int, cmd: dict[int, bytes]) -> bool: ...
    def on_data(self, chunk: memoryview) -> None: ...
    def on_dataset_end(self) -> None: ...
    def on_failure(self, error: AssociationError) -> None: ...
    def close(self) -> None: ...


class _RequestorConnection(UpperLayerConnection):
    def __init__(self, request: AssociateRequest, where: str, read_buffer_size: int) -> None:
        super().__init__(max_pdu=request.max_pdu, read_buffer_size=read_buffer_size)
        self._loop = loop = asyncio.get_running_loop()
        self._request = request
        self.where = where
        self.established: asyncio.Future[AssociateAccept] = loop.create_future()
        self.released: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.error: AssociationError | None = None
        self._pending: asyncio.Future[dict[int, bytes]] | None = None
        self._pending_id = -1
        self.operation: _Operation[Any] | None = None
        """The C-FIND / C-MOVE / C-GET in progress: it gets every message while installed."""
        self.last_rx = 0.0
        """When bytes last arrived (loop time): a retrieve times out on silence, not length."""

    @property
    def pending(self) -> asyncio.Future[dict[int, bytes]] | None:
        """The future of the response awaited last (done once answered or failed)."""
        return self._pending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write(encode_associate_rq(self._request))

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """Send a framed message: one buffer as is, several as one gathered write."""
        if len(parts) == 1:
            self.write(parts[0])
        else:
            self.writelines(parts)

    def expect(self, message_id: int) -> asyncio.Future[dict[int, bytes]]:
        self._pending = self._loop.create_future()
        self._pending_id = message_id
        return self._pending

    def _fail(self, error: AssociationError) -> None:
        if self.error is None:
            self.error = error
        for future in (self.established, self.released, self._pending):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved here: the caller may be gone
        if self.operation is not None:
            self.operation.on_failure(error)

    def _on_pdu(self, pdu_type: int, body: bytes) -> None:
        if pdu_type == A_ASSOCIATE_AC and not self.established.done():
            self._pdata_allowed = True
            self.established.set_result(decode_associate_ac(body))
        elif pdu_type == A_ASSOCIATE_RJ and not self.established.done():
            result, source, reason = decode_associate_rj(body)
            text = describe_rejection(result, source, reason)
            self._fail(
                AssociationRejected(
                    result, source, reason, f"{self.where} rejected the association: {text}"
                )
            )
            self.close()
        elif pdu_type == A_RELEASE_RP and self.established.done():
            if not self.released.done():
                self.released.set_result(None)
            self.close()
        elif pdu_type == A_RELEASE_RQ and self.established.done():
            self.write(encode_release_rp())
            self._fail(AssociationAborted(f"{self.where} released the association"))
            self.close()
        elif pdu_type == A_ABORT:
            source, reason = decode_abort(body)
            self._fail(AssociationAborted(f"{self.where}: {describe_abort(source, reason)}"))
            self.close()
        else:
            raise PduError(f"unexpected PDU type 0x{pdu_type:02X}", ABORT_REASON_UNEXPECTED_PDU)

    def _on_protocol_error(self, error: PduError) -> None:
        self._fail(AssociationAborted(f"protocol error from {self.where}: {error}"))
        super()._on_protocol_error(error)

    def _on_bytes_received(self) -> None:
        self.last_rx = self._loop.time()

    def _on_command(self, context_id: int, command: bytes) -> bool:
        if self.operation is not None:
            cmd = dimse.decode_command(command, foreign_groups=True)
            return self.operation.on_command(context_id, cmd)
        cmd = dimse.decode_command(command)
        pending = self._pending
        responded_to = dimse.command_int(cmd, dimse.MESSAGE_ID_BEING_RESPONDED_TO)
        if pending is not None and not pending.done() and responded_to == self._pending_id:
            pending.set_result(cmd)
        return dimse.command_int(cmd, dimse.COMMAND_DATA_SET_TYPE) != dimse.NO_DATASET

    def _on_data(self, chunk: memoryview) -> None:
        # Responses to C-ECHO and C-STORE carry no dataset: only a query or retrieve wants data.
        if self.operation is not None:
            self.operation.on_data(chunk)

    def _on_dataset_end(self, context_id: int) -> None:
        if self.operation is not None:
            self.operation.on_dataset_end()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail(
            AssociationAborted(f"connection to {self.where} lost{f': {exc}' if exc else ''}")
        )
        if not self.lost.done():
            self.lost.set_result(None)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the transport has really closed its socket (bounded)."""
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), timeout)
        except TimeoutError:
            self.force_close()


class Association:
    """An association we requested. Create with :meth:`connect`; use as an async context
    manager to release it (or abort it when the block raises)."""

    def __init__(
        self,
        connection: _RequestorConnection,
        accept: AssociateAccept,
        proposed: dict[int, str],
        dimse_timeout: float | None,
        acse_timeout: float,
    ) -> None:
        self._conn = connection
        self.accept = accept
        self.contexts: tuple[AcceptedContext, ...] = tuple(
            AcceptedContext(r.context_id, proposed[r.context_id], r.transfer_syntax)
            for r in accept.results
            if r.result == PC_ACCEPTANCE and r.context_id in proposed
        )
        self.peer_max_pdu = accept.max_pdu
        self._send_max = min(accept.max_pdu or MAX_SEND_PDU, MAX_SEND_PDU)
        self._dimse_timeout = dimse_timeout
        self._acse_timeout = acse_timeout
        self._message_ids = itertools.count(1)
        self._busy = False
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        """When the awaited response is due; None while no response is awaited."""
        self._watchdog: asyncio.TimerHandle | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        called_aet: str,
        calling_aet: str = "MERCURE",
        contexts: Sequence[ContextProposal] = (ContextProposal(VERIFICATION_SOP_CLASS),),
        roles: Sequence[RoleSelection] = (),
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        max_pdu: int = 262144,
        connect_timeout: float = 30.0,
        acse_timeout: float = 30.0,
        dimse_timeout: float | None = 120.0,
        read_buffer_size: int = 65536,
    ) -> Association:
        """Connect, propose ``contexts`` (at most 128) and wait for the peer's answer.

        Raises AssociationRejected, or AssociationError when the peer cannot be reached.
        """
        if not 0 < len(contexts) <= 128:
            raise ValueError("propose between 1 and 128 presentation contexts")
        proposals = [
            PresentationContextProposal(2 * i + 1, c.abstract_syntax, tuple(c.transfer_syntaxes))
            for i, c in enumerate(contexts)
        ]
        request = AssociateRequest(
            called_aet=called_aet,
            calling_aet=calling_aet,
            contexts=proposals,
            max_pdu=max_pdu,
            role_selections=list(roles),
        )
        where = f"{called_aet}@{host}:{port}"
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _RequestorConnection(request, where, read_buffer_size),
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=server_hostname if ssl_context else None,
                ),
                connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise AssociationError(
                f"cannot connect to {where}: {exc or type(exc).__name__}"
            ) from exc
        try:
            accept = await asyncio.wait_for(asyncio.shield(connection.established), acse_timeout)
        except TimeoutError:
            connection.force_close()
            await connection.wait_closed()
            raise AssociationAborted(f"{where} did not answer the association request") from None
        except BaseException:
            connection.force_close()
            await connection.wait_closed()
            raise
        proposed = {p.context_id: p.abstract_syntax for p in proposals}
        return cls(connection, accept, proposed, dimse_timeout, acse_timeout)

    def context_for(self, sop_class_uid: str, transfer_syntax_uid: str) -> AcceptedContext | None:
        """The accepted context for this SOP class in this transfer syntax, if any."""
        for context in self.contexts:
            if (
                context.abstract_syntax == sop_class_uid
                and context.transfer_syntax == transfer_syntax_uid
            ):
                return context
        return None

    @property
    def is_open(self) -> bool:
        """True while requests can be sent."""
        return self._conn.error is None and not self._conn.closing

    async def echo(self) -> DimseResponse:
        """Send a C-ECHO-RQ (Verification must have been accepted)."""
        context = next(
            (c for c in self.contexts if c.abstract_syntax == VERIFICATION_SOP_CLASS), None
        )
        if context is None:
            raise PresentationContextError(
                f"{self._conn.where} did not accept the Verification SOP class"
            )
        message_id = self._next_message_id()
        return await self._request(
            context.context_id, dimse.encode_c_echo_rq(message_id), message_id, None
        )

    async def store_file(
        self, path: Path | str, *, priority: int = 0, meta: FileMeta | None = None
    ) -> DimseResponse:
        """Send a Part 10 file with C-STORE, its dataset streamed from disk as stored.

        ``meta``, when the caller has read the file's File Meta Information already (to propose
        the contexts), saves parsing it a second time; the file must not have changed since.

        Raises PresentationContextError when no accepted context has the file's SOP class and
        transfer syntax (convert it and use :meth:`store_dataset`), DicomFileError when the file
        is unusable, AssociationError when the association fails.
        """
        # The common case: read whole and framed by _prepare, the file closed before sending.
        prepared = self._prepare(path, meta, priority)
        if isinstance(prepared, (DicomFileError, PresentationContextError)):
            raise prepared
        if prepared is not None:
            response, _ = await self._send_prepared(prepared)
            return response
        # Larger than a block: streamed from the descriptor, closed after the awaits.
        name = os.fspath(path)
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError as exc:
            raise DicomFileError(f"cannot open {name}: {exc}") from exc
        try:
            try:
                file_size = os.fstat(fd).st_size
                handle = open(fd, "rb", buffering=0, closefd=False)  # noqa: SIM115
            except OSError as exc:
                raise DicomFileError(f"cannot open {name}: {exc}") from exc
            if meta is not None and meta.dataset_offset > file_size:
                raise DicomFileError(f"{name} shrank after its File Meta Information was read")
            if meta is None:
                meta = read_file_meta_from(handle, name)
            handle.seek(meta.dataset_offset)
            dataset = (handle, file_size - meta.dataset_offset, name)
            context = self._context_or_raise(meta.sop_class_uid, meta.transfer_syntax_uid)
            message_id = self._next_message_id()
            command = dimse.encode_c_store_rq(
                meta.sop_class_uid, meta.sop_instance_uid, message_id, priority
            )
            return await self._request(context.context_id, command, message_id, dataset)
        finally:
            if fd >= 0:
                os.close(fd)

    async def store_files(
        self,
        files: Sequence[tuple[Path | str, FileMeta | None]],
        *,
        priority: int = 0,
    ) -> AsyncGenerator[
        tuple[int, DimseResponse | DicomFileError | PresentationContextError], None
    ]:
        """C-STORE each ``(path, meta or None)`` in order; yields ``(index, response)``.

        One request at a time, as :meth:`store_file` sends them, but the next file is read and
        framed while the peer works on the current one: between an answer and the next request
        there is only what the caller does with the answer (the next request leaves when the
        caller asks for the next outcome, so an answer is recorded before the next is sent). A
        file that cannot be sent (unreadable, no accepted context for its SOP class and stored
        syntax) is yielded with its DicomFileError or PresentationContextError in its place and
        the association goes on; AssociationError is raised when the association fails. Files
        larger than :data:`SEND_BLOCK` are streamed as by :meth:`store_file`.
        """
        ahead: _Prepared | DicomFileError | PresentationContextError | None = None
        for index, (path, meta) in enumerate(files):
            # Read while the previous request was in flight, or now.
            current = ahead if ahead is not None else self._prepare(path, meta, priority)
            ahead = None
            if isinstance(current, (DicomFileError, PresentationContextError)):
                yield index, current
                continue
            if current is None:  # too large to hold: streamed
                try:
                    response = await self.store_file(path, priority=priority, meta=meta)
                except (DicomFileError, PresentationContextError) as exc:
                    yield index, exc
                else:
                    yield index, response
                continue
            following = files[index + 1] if index + 1 < len(files) else None
            response, ahead = await self._send_prepared(current, following, priority)
            yield index, response

    async def _send_prepared(
        self,
        prepared: _Prepared,
        following: tuple[Path | str, FileMeta | None] | None = None,
        priority: int = 0,
    ) -> tuple[DimseResponse, _Prepared | DicomFileError | PresentationContextError | None]:
        """Send a prepared C-STORE request and await its answer; ``following`` is read and
        framed (see :meth:`_prepare`) while the peer works on the request, and returned."""
        conn = self._begin_request()
        try:
            future = conn.expect(prepared.message_id)
            conn.write_parts(prepared.parts)
            if self._dimse_timeout is not None:
                self._arm_watchdog()
            ahead = self._prepare(*following, priority) if following is not None else None
            cmd = await self._answer(future)
        finally:
            self._busy = False
        return _response(cmd), ahead

    def _prepare(
        self, path: Path | str, meta: FileMeta | None, priority: int
    ) -> _Prepared | DicomFileError | PresentationContextError | None:
        """The C-STORE request of ``path`` read and framed, the reason it cannot be sent, or
        None when the file is too large to hold (it is then streamed)."""
        name = os.fspath(path)
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError as exc:
            return DicomFileError(f"cannot open {name}: {exc}")
        try:
            file_size = os.fstat(fd).st_size
            if file_size > max(self._send_max, SEND_BLOCK):
                return None
            whole = _read_whole(fd, file_size, name)
        except OSError as exc:
            return DicomFileError(f"cannot read {name}: {exc}")
        except DicomFileError as exc:
            return exc
        finally:
            os.close(fd)
        try:
            if meta is None:
                meta = read_file_meta_from(io.BytesIO(whole), name)
            elif meta.dataset_offset > file_size:
                raise DicomFileError(f"{name} shrank after its File Meta Information was read")
            context = self._context_or_raise(meta.sop_class_uid, meta.transfer_syntax_uid)
        except (DicomFileError, PresentationContextError) as exc:
            return exc
        message_id = self._next_message_id()
        command = dimse.encode_c_store_rq(
            meta.sop_class_uid, meta.sop_instance_uid, message_id, priority
        )
        head = encode_pdata(context.context_id, command, command=True, max_pdu=self._send_max)
        dataset = memoryview(whole)[meta.dataset_offset :]
        return _Prepared(message_id, self._pdus(context.context_id, dataset, head, True))

    async def store_dataset(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        dataset: bytes | bytearray | memoryview,
        *,
        priority: int = 0,
    ) -> DimseResponse:
        """Send an encoded dataset (no File Meta) held in memory with C-STORE."""
        context = self._context_or_raise(sop_class_uid, transfer_syntax_uid)
        message_id = self._next_message_id()
        command = dimse.encode_c_store_rq(sop_class_uid, sop_instance_uid, message_id, priority)
        return await self._request(context.context_id, command, message_id, memoryview(dataset))

    async def find(
        self,
        identifier: Dataset,
        *,
        model: Model = "study",
        limit: int | None = None,
        priority: int = 0,
    ) -> list[Dataset]:
        """C-FIND: the matches of ``identifier``, each decoded with pydicom, in the peer's order.

        ``identifier`` holds QueryRetrieveLevel, the matching keys and the (empty) return keys;
        it is encoded in the accepted transfer syntax. With ``limit``, the query is cancelled
        (C-CANCEL-RQ) once that many matches have arrived and the rest dropped. The DIMSE
        timeout applies to the silence between responses. Raises FindFailed for a failure
        status (with the peer's comment) or an unreadable match, the association still usable;
        AssociationError when the association fails.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        sop_class = find_class(model)
        context = self._context_or_raise(sop_class, None)
        message_id = self._next_message_id()
        operation = FindOperation(
            self._conn,
            where=self._conn.where,
            message_id=message_id,
            context=context,
            peer_max_pdu=self._send_max,
            limit=limit,
        )
        command = dimse.encode_c_find_rq(sop_class, message_id, priority)
        return await self._follow(operation, command, identifier, "C-FIND")

    async def move(
        self,
        identifier: Dataset,
        destination_aet: str,
        *,
        model: Model = "study",
        priority: int = 0,
        progress: ProgressCallback | None = None,
    ) -> RetrieveResult:
        """C-MOVE: ask the peer to send what ``identifier`` selects to ``destination_aet``.

        ``identifier`` holds QueryRetrieveLevel (STUDY, SERIES or IMAGE) and the UIDs down to
        that level; it is encoded in the accepted transfer syntax. Pending responses go to
        ``progress`` (remaining, completed, failed, warning); the DIMSE timeout applies to the
        silence between messages, not to the whole retrieve. A refusal by the peer is a result
        (see ``RetrieveResult.ok``); AssociationError is raised when the association fails.
        """
        sop_class = move_class(model)
        context = self._context_or_raise(sop_class, None)
        message_id = self._next_message_id()
        command = dimse.encode_c_move_rq(sop_class, message_id, destination_aet, priority)
        operation = RetrieveOperation(
            self._conn,
            message_id=message_id,
            context=context,
            response_field=dimse.C_MOVE_RSP,
            peer_max_pdu=self._send_max,
            progress=progress,
        )
        return await self._follow(operation, command, identifier, "retrieve")

    async def get(
        self,
        identifier: Dataset,
        *,
        open_store: Callable[[StoreContext], StoreSink],
        model: Model = "study",
        priority: int = 0,
        progress: ProgressCallback | None = None,
    ) -> RetrieveResult:
        """C-GET: retrieve what ``identifier`` selects on this association.

        The association must have been proposed with the contexts and SCP role selections of
        :func:`mercure.dicomnet.retrieve.get_contexts` (or the caller's own). Each instance the
        peer sends is streamed into the sink ``open_store`` returns for it, as the acceptor
        does, and answered with the sink's status (a refused instance is a failed
        sub-operation; the C-GET goes on). When the association fails midway, every instance
        not yet finished is aborted in its sink and AssociationError is raised.
        """
        sop_class = get_class(model)
        context = self._context_or_raise(sop_class, None)
        message_id = self._next_message_id()
        command = dimse.encode_c_get_rq(sop_class, message_id, priority)
        transport = self._conn.transport
        host, port = peer_address(transport) if transport is not None else ("", 0)
        association = AssociationInfo(
            id=0,
            # As on a listener, "calling" is the sender of the instances: the peer here.
            calling_aet=self.accept.called_aet.strip(),
            called_aet=self.accept.calling_aet.strip(),
            peer_host=host,
            peer_port=port,
            contexts=self.contexts,
            peer_max_pdu=self.peer_max_pdu,
            tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
            started_at=time.time(),
        )
        operation = RetrieveOperation(
            self._conn,
            message_id=message_id,
            context=context,
            response_field=dimse.C_GET_RSP,
            peer_max_pdu=self._send_max,
            progress=progress,
            storage_contexts={
                c.context_id: c for c in self.contexts if c.abstract_syntax != sop_class
            },
            association=association,
            open_store=open_store,
        )
        return await self._follow(operation, command, identifier, "retrieve")

    def cancel(self) -> None:
        """Ask the peer to stop the C-FIND / C-MOVE / C-GET in progress (C-CANCEL-RQ).

        The request then ends with the peer's final response, usually status Cancel (0xFE00)
        (with the counts so far, for a retrieve); nothing happens when none is in progress.
        """
        operation = self._conn.operation
        if operation is None or operation.done.done():
            return
        self._conn.write(
            encode_pdata(
                operation.context.context_id,
                dimse.encode_c_cancel_rq(operation.message_id),
                command=True,
                max_pdu=self._send_max,
            )
        )

    async def release(self) -> None:
        """Release the association (A-RELEASE); aborts it if the peer does not answer."""
        self._stop_watchdog()
        if not self.is_open:
            self._conn.close()
            await self._conn.wait_closed()
            return
        self._conn.write(encode_release_rq())
        try:
            await asyncio.wait_for(asyncio.shield(self._conn.released), self._acse_timeout)
        except AssociationError:
            pass
        except TimeoutError:
            log.warning("%s did not answer A-RELEASE-RQ; aborting", self._conn.where)
            self.abort()
        self._conn.close()
        await self._conn.wait_closed()

    def abort(self) -> None:
        """Abort the association (A-ABORT) and close the connection."""
        self._stop_watchdog()
        self._conn.send_abort(ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED)
        self._conn.close()

    async def __aenter__(self) -> Association:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            await self.release()
        else:
            self.abort()
            await self._conn.wait_closed()

    # --- internals -------------------------------------------------------------------------

    def _next_message_id(self) -> int:
        return next(self._message_ids) % 0xFFFF + 1

    def _context_or_raise(
        self, sop_class_uid: str, transfer_syntax_uid: str | None
    ) -> AcceptedContext:
        """The accepted context for the SOP class (in that transfer syntax, unless None)."""
        if transfer_syntax_uid is None:
            context = next((c for c in self.contexts if c.abstract_syntax == sop_class_uid), None)
        else:
            context = self.context_for(sop_class_uid, transfer_syntax_uid)
        if context is None:
            in_syntax = f" in transfer syntax {transfer_syntax_uid}" if transfer_syntax_uid else ""
            raise PresentationContextError(
                f"{self._conn.where} accepted no context for SOP class {sop_class_uid}{in_syntax}"
            )
        return context

    async def _follow(
        self, operation: _Operation[T], command: bytes, identifier: Dataset, what: str
    ) -> T:
        """Send a C-FIND/C-MOVE/C-GET request and follow it to its final response."""
        conn = self._conn
        if conn.error is not None:
            raise conn.error
        if self._busy:
            raise RuntimeError("an Association sends one request at a time")
        data = encode_identifier(identifier, operation.context.transfer_syntax)
        self._busy = True
        conn.operation = operation
        try:
            head = encode_pdata(
                operation.context.context_id, command, command=True, max_pdu=self._send_max
            )
            conn.last_rx = self._loop.time()
            await self._send_memory(operation.context.context_id, memoryview(data), head)
            try:
                return await self._await_final(operation, what)
            finally:
                if operation.finishing is not None:
                    # An instance being made durable finishes (it was complete): never half.
                    await asyncio.gather(operation.finishing, return_exceptions=True)
        finally:
            operation.close()
            conn.operation = None
            self._busy = False

    async def _await_final(self, operation: _Operation[T], what: str) -> T:
        """The final result; the DIMSE timeout is on silence, paused while we finish."""
        timeout = self._dimse_timeout
        if timeout is None:
            return await operation.done
        wait = timeout
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(operation.done), wait)
            except TimeoutError:
                silent = self._loop.time() - self._conn.last_rx
                if operation.finishing is not None:
                    wait = timeout
                elif silent >= timeout:
                    self.abort()
                    raise AssociationAborted(
                        f"{self._conn.where} sent nothing for {timeout:g} s during a {what}"
                    ) from None
                else:
                    wait = timeout - silent

    async def _request(
        self,
        context_id: int,
        command: bytes,
        message_id: int,
        dataset: memoryview | tuple[io.RawIOBase, int, str] | None,
    ) -> DimseResponse:
        conn = self._begin_request()
        try:
            response = conn.expect(message_id)
            head = encode_pdata(context_id, command, command=True, max_pdu=self._send_max)
            if dataset is None:
                conn.write(head)
            elif isinstance(dataset, memoryview):
                await self._send_memory(context_id, dataset, head)
            else:
                await self._send_file(context_id, *dataset, head)
            if self._dimse_timeout is not None:
                self._arm_watchdog()
            cmd = await self._answer(response)
        finally:
            self._busy = False
        return _response(cmd)

    def _begin_request(self) -> _RequestorConnection:
        """The connection, checked and marked busy for one request (the caller clears
        ``_busy`` when the answer is in)."""
        conn = self._conn
        if conn.error is not None:
            raise conn.error
        if self._busy:
            raise RuntimeError("an Association sends one request at a time")
        self._busy = True
        self._deadline = None
        return conn

    async def _answer(self, future: asyncio.Future[dict[int, bytes]]) -> dict[int, bytes]:
        """The awaited response's command set; aborts if the DIMSE timeout passes first."""
        try:
            return await future
        except _NoResponse:
            self.abort()
            raise AssociationAborted(
                f"{self._conn.where} sent no response within {self._dimse_timeout} s"
            ) from None

    def _arm_watchdog(self) -> None:
        """Start the response deadline; the timer, if running, picks it up when it fires."""
        assert self._dimse_timeout is not None
        deadline = self._deadline = self._loop.time() + self._dimse_timeout
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._watchdog = None
        pending = self._conn.pending
        deadline = self._deadline
        if deadline is None or pending is None or pending.done():
            return  # nothing awaited now: the timer lapses until the next request arms it
        if self._loop.time() >= deadline:
            pending.set_exception(_NoResponse())
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def _send_memory(self, context_id: int, data: memoryview, head: bytes) -> None:
        """Send ``data`` as dataset PDUs; ``head`` (the command PDU) goes out with the first.

        The PDUs of each :data:`SEND_BLOCK` bytes leave in one gathered write (``writev`` on
        uvloop): no copy of the data, one system call instead of one per PDU.
        """
        step = self._send_max - 6
        per_block = max(step, SEND_BLOCK // step * step)
        size = len(data)
        start = 0
        while True:
            end = min(size, start + per_block)
            self._conn.write_parts(self._pdus(context_id, data[start:end], head, end >= size))
            if end >= size:
                return
            start, head = end, b""
            await self._drain()

    async def _send_file(
        self, context_id: int, handle: io.RawIOBase, size: int, name: str, head: bytes
    ) -> None:
        """Stream ``size`` bytes of ``handle`` as dataset PDUs, ``head`` before the first: one
        read and one gathered write per :data:`SEND_BLOCK` bytes rather than per PDU."""
        step = self._send_max - 6
        per_block = max(step, SEND_BLOCK // step * step)
        remaining = size
        while True:
            n = min(per_block, remaining)
            # A fresh block each time: the transport may keep views of it until it is sent.
            view = memoryview(bytearray(n))
            got = 0
            while got < n:
                read = handle.readinto(view[got:])
                if not read:
                    self.abort()
                    raise DicomFileError(f"{name} shrank while being sent")
                got += read
            remaining -= n
            self._conn.write_parts(self._pdus(context_id, view, head, not remaining))
            if not remaining:
                return
            head = b""
            await self._drain()

    def _pdus(
        self, context_id: int, data: memoryview, head: bytes, last: bool
    ) -> list[bytes | memoryview]:
        """``head``, then ``data`` framed as dataset PDUs (headers and views, not copied);
        ``last`` marks the final PDU as the end of the dataset."""
        step = self._send_max - 6
        size = len(data)
        parts: list[bytes | memoryview] = [head] if head else []
        start = 0
        while True:
            chunk = data[start : start + step]
            start += len(chunk)
            parts.append(
                pdata_header(context_id, len(chunk), command=False, last=last and start >= size)
            )
            parts.append(chunk)
            if start >= size:
                # A small message is cheaper copied into one buffer than gathered.
                return [b"".join(parts)] if size <= _JOIN_BELOW else parts

    async def _drain(self) -> None:
        await self._conn.drain()
        if self._conn.error is not None:
            raise self._conn.error


def _response(cmd: dict[int, bytes]) -> DimseResponse:
    """The DimseResponse of a response command set."""
    status = dimse.command_int(cmd, dimse.STATUS)
    if status is None:
        # Never read a missing status as success: the instance may not have been kept.
        return DimseResponse(dimse.CANNOT_UNDERSTAND, "response without a status")
    comment = dimse.command_text(cmd, dimse.ERROR_COMMENT)
    if status == dimse.SUCCESS and not comment:
        return _SUCCESS
    return DimseResponse(status, comment)


class _NoResponse(Exception):
    """Set on a pending response whose DIMSE deadline passed (never leaves this module)."""


def _read_whole(fd: int, size: int, name: str) -> bytes:
    """The first ``size`` bytes of an open file, in one read unless it is being rewritten."""
    data = os.read(fd, size)
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise DicomFileError(f"{name} shrank while being sent")
        data += more
    return data
