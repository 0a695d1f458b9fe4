"""The association acceptor: one instance per incoming connection (PS3.8 states Sta2..Sta13
collapsed to the few an SCP needs).

Per C-STORE the path is: command set decoded (dict of raw values) -> ``open_store`` -> dataset
PDVs written to the sink as views of the receive buffer -> ``finish`` -> C-STORE-RSP built from
the request's raw UIDs. No pydicom, no per-fragment coroutine, one small context object.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from mercure.dicomnet import dimse
from mercure.dicomnet.connection import UpperLayerConnection, peer_address
from mercure.dicomnet.handler import (
    DISCARD_SINK,
    REJECT_CALLED_AET,
    REJECT_CALLING_AET,
    REJECT_LOCAL_LIMIT,
    AssociationInfo,
    AssociationRequest,
    AssociationStats,
    Outcome,
    Rejection,
    StoreContext,
    StoreSink,
    failure_status,
)
from mercure.dicomnet.negotiation import AcceptedContext, negotiate
from mercure.dicomnet.pdu import (
    A_ABORT,
    A_ASSOCIATE_RQ,
    A_RELEASE_RQ,
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_REASON_UNEXPECTED_PARAMETER,
    ABORT_REASON_UNEXPECTED_PDU,
    ABORT_SOURCE_PROVIDER,
    REJECTED_PERMANENT,
    SOURCE_PROVIDER_ACSE,
    SOURCE_SERVICE_USER,
    AssociateAccept,
    PduError,
    ae_title_problem,
    decode_abort,
    decode_associate_rq,
    describe_abort,
    encode_associate_ac,
    encode_associate_rj,
    encode_pdata,
    encode_release_rp,
    shown_title,
)
from mercure.dicomnet.uids import APPLICATION_CONTEXT_NAME

if TYPE_CHECKING:
    from mercure.dicomnet.server import DicomServer

log = logging.getLogger(__name__)

_association_ids = itertools.count(1)

_AWAIT_REQUEST, _ESTABLISHED, _DONE = 0, 1, 2

_WATCHDOG_STEP = 0.1
"""Seconds between looks at the limits while an instance is being finished past a limit."""


class AcceptorConnection(UpperLayerConnection):
    """Serves one incoming connection for a :class:`~mercure.dicomnet.server.DicomServer`."""

    def __init__(self, server: DicomServer) -> None:
        settings = server.settings
        super().__init__(max_pdu=settings.max_pdu, read_buffer_size=settings.read_buffer_size)
        self._server = server
        self._settings = settings
        self._handler = server.handler
        self._loop = asyncio.get_running_loop()
        self._state = _AWAIT_REQUEST
        self._peer = ("", 0)
        self._timer: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self._opened_at = 0.0
        self._info: AssociationInfo | None = None
        self._contexts: dict[int, AcceptedContext] = {}
        self._peer_max_pdu = 0
        self._outcome: Outcome = "connection_lost"
        self._reason = ""
        self._counted = False
        # The message in progress: its sink, the write method (looked up once) and what the
        # response needs. ``_status`` is set when the answer is already decided.
        self._sink: StoreSink | None = None
        self._sink_write = DISCARD_SINK.write
        self._status: int | None = None
        self._comment = ""
        self._rsp_field = 0
        self._rsp_context = 0
        self._rsp_message_id = 0
        self._rsp_class = b""
        self._rsp_instance: bytes | None = None
        self._finishing: asyncio.Task[None] | None = None
        self._stored = 0
        self._failed = 0
        self._bytes = 0
        self._echoes = 0

    # --- connection lifecycle --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._peer = peer_address(transport)
        self._server.connection_opened(self)
        self._timer = self._loop.call_later(self._settings.acse_timeout, self._artim_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._cancel_timer()
        if self._state == _ESTABLISHED and self._outcome == "connection_lost":
            self._reason = str(exc) if exc else "connection closed without release"
        self._state = _DONE
        if self._sink is not None:
            self._abort_sink("association ended mid-dataset")
        if self._finishing is None:
            self._notify_closed()
        # else: _await_finish reports the end once the application has finished; until then
        # the server counts this connection as busy (a shutdown waits for it).

    def _on_bytes_received(self) -> None:
        now = self._last_rx = self._loop.time()
        if not self._pdu_since:
            self._pdu_since = now

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _artim_expired(self) -> None:
        self._timer = None
        if self._state == _AWAIT_REQUEST:
            log.warning(
                "no association request from %s:%s within %s s",
                *self._peer,
                self._settings.acse_timeout,
            )
            self._abort_locally("no A-ASSOCIATE-RQ in time", ABORT_REASON_NOT_SPECIFIED)

    def _watchdog(self) -> None:
        """Abort the association once past one of its time limits, else look again when the
        next one is due. While the application finishes an instance no limit applies: the
        peer is waiting for us then."""
        self._timer = None
        if self._state != _ESTABLISHED or self.closing:
            return
        now = self._loop.time()
        due, limit = self._next_limit(now)
        if now >= due and self._finishing is None:
            log.warning("dropping the association from %s: %s", self._describe(), limit)
            self._abort_locally(limit, ABORT_REASON_NOT_SPECIFIED)
            return
        self._timer = self._loop.call_at(max(due, now + _WATCHDOG_STEP), self._watchdog)

    def _next_limit(self, now: float) -> tuple[float, str]:
        """The earliest time a limit may be passed, and what passing it means."""
        settings = self._settings
        idle = settings.idle_timeout
        due, limit = self._last_rx + idle, f"idle_timeout: silent for {idle:g} s"
        pdu_timeout = settings.pdu_timeout
        if pdu_timeout:
            if self._pdu_since:
                pdu_due = self._pdu_since + pdu_timeout
                pdu_limit = (
                    f"pdu_timeout: a PDU not complete {pdu_timeout:g} s after its first byte"
                )
            else:
                # No PDU under way: one that starts from now on is due after this.
                pdu_due, pdu_limit = now + pdu_timeout, "no PDU under way"
            if pdu_due < due:
                due, limit = pdu_due, pdu_limit
        longest = settings.max_association_duration
        if longest and self._opened_at + longest < due:
            due = self._opened_at + longest
            limit = f"max_association_duration: open for {longest:g} s"
        return due, limit

    def _abort_locally(self, reason: str, abort_reason: int) -> None:
        if self._state == _ESTABLISHED:
            self._outcome = "aborted_locally"
            self._reason = reason
        self.send_abort(ABORT_SOURCE_PROVIDER, abort_reason)

    def _on_protocol_error(self, error: PduError) -> None:
        log.warning("protocol error from %s: %s; aborting", self._describe(), error)
        self._abort_locally(f"protocol error: {error}", error.abort_reason)

    def abort(self, reason: str) -> None:
        """Abort the association (server shutdown)."""
        self._abort_locally(reason, ABORT_REASON_NOT_SPECIFIED)

    def _describe(self) -> str:
        if self._info is not None:
            return f"{self._info.calling_aet}@{self._peer[0]}:{self._peer[1]}"
        return f"{self._peer[0]}:{self._peer[1]}"

    # --- association PDUs ------------------------------------------------------------------

    def _on_pdu(self, pdu_type: int, body: bytes) -> None:
        if pdu_type == A_ABORT:
            source, reason = decode_abort(body)
            if self._state == _ESTABLISHED:
                self._outcome = "aborted_by_peer"
                self._reason = describe_abort(source, reason)
            log.info("association from %s aborted by the peer", self._describe())
            self.close()
        elif self._state == _AWAIT_REQUEST and pdu_type == A_ASSOCIATE_RQ:
            self._cancel_timer()
            self._on_associate_request(body)
        elif self._state == _ESTABLISHED and pdu_type == A_RELEASE_RQ:
            if self._sink is not None:
                self._abort_sink("release requested mid-dataset")
            self.write(encode_release_rp())
            self._outcome = "released"
            self.close()
        else:
            raise PduError(f"unexpected PDU type 0x{pdu_type:02X}", ABORT_REASON_UNEXPECTED_PDU)

    def _on_associate_request(self, body: bytes) -> None:
        rq = decode_associate_rq(body)
        transport = self.transport
        assert transport is not None
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert() if ssl_object is not None else None
        request = AssociationRequest.from_pdu(rq, self._peer, certificate)
        rejection: Rejection | None
        if not rq.protocol_version & 1:
            rejection = Rejection(REJECTED_PERMANENT, SOURCE_PROVIDER_ACSE, 2)
        elif rq.application_context != APPLICATION_CONTEXT_NAME:
            rejection = Rejection(REJECTED_PERMANENT, SOURCE_SERVICE_USER, 2)
        elif problem := ae_title_problem(rq.calling_aet):
            log.warning("calling AE title from %s:%s refused: %s", *self._peer, problem)
            rejection = REJECT_CALLING_AET
        elif problem := ae_title_problem(rq.called_aet):
            log.warning("called AE title from %s:%s refused: %s", *self._peer, problem)
            rejection = REJECT_CALLED_AET
        elif self._server.active_associations >= self._settings.max_associations:
            rejection = REJECT_LOCAL_LIMIT
        else:
            try:
                rejection = self._handler.accept_association(request)
            except Exception:
                log.exception("accept_association failed for %s; rejecting", self._describe())
                rejection = Rejection(2, SOURCE_SERVICE_USER, 1)
        if rejection is not None:
            log.info(
                "rejected association %s -> %s from %s:%s: %s",
                shown_title(rq.calling_aet),
                shown_title(rq.called_aet),
                *self._peer,
                rejection,
            )
            self.write(encode_associate_rj(rejection.result, rejection.source, rejection.reason))
            self._state = _DONE
            self.close()
            self._notify("on_association_rejected", request, rejection)
            return
        negotiated = negotiate(
            rq,
            self._settings.sop_classes,
            self._settings.transfer_syntaxes,
            accept_unknown=self._settings.accept_unknown_sop_classes,
        )
        accept = AssociateAccept(
            called_aet=rq.called_aet or self._settings.ae_title,
            calling_aet=rq.calling_aet or "UNKNOWN",
            results=negotiated.results,
            max_pdu=self._settings.max_pdu,
            role_selections=negotiated.role_replies,
        )
        self.write(encode_associate_ac(accept))
        self._contexts = negotiated.accepted
        self._peer_max_pdu = rq.max_pdu
        self._info = AssociationInfo(
            id=next(_association_ids),
            calling_aet=rq.calling_aet,
            called_aet=rq.called_aet,
            peer_host=self._peer[0],
            peer_port=self._peer[1],
            contexts=tuple(negotiated.accepted.values()),
            peer_max_pdu=rq.max_pdu,
            tls=ssl_object is not None,
            started_at=time.time(),
        )
        self._state = _ESTABLISHED
        self._pdata_allowed = True
        self._server.association_started()
        self._counted = True
        log.debug(
            "accepted association %s -> %s from %s:%s, %d of %d contexts",
            rq.calling_aet,
            rq.called_aet,
            *self._peer,
            len(negotiated.accepted),
            len(rq.contexts),
        )
        if negotiated.unsupported:
            # Once per association: tells an administrator which SOP classes a sender could
            # not deliver here (a private one may need the listener's extra_sop_classes).
            log.info(
                "association %s -> %s from %s:%s: abstract syntax not supported: %s",
                rq.calling_aet,
                rq.called_aet,
                *self._peer,
                _uid_list(negotiated.unsupported),
            )
        self._notify("on_association_opened", self._info)
        self._last_rx = self._opened_at = self._loop.time()
        self._watchdog()

    # --- DIMSE -----------------------------------------------------------------------------

    def _on_command(self, context_id: int, command: bytes) -> bool:
        context = self._contexts.get(context_id)
        if context is None:
            raise PduError(
                f"message on presentation context {context_id}, which was not accepted",
                ABORT_REASON_UNEXPECTED_PARAMETER,
            )
        cmd = dimse.decode_command(command)
        self._rsp_context = context_id
        field = dimse.command_int(cmd, dimse.COMMAND_FIELD)
        has_dataset = dimse.command_int(cmd, dimse.COMMAND_DATA_SET_TYPE) != dimse.NO_DATASET
        message_id = dimse.command_int(cmd, dimse.MESSAGE_ID) or 0
        sop_class_raw = cmd.get(dimse.AFFECTED_SOP_CLASS_UID, b"")
        if field == dimse.C_STORE_RQ:
            self._begin_store(context, cmd, message_id, sop_class_raw, has_dataset)
            if has_dataset:
                return True
            self._sink = None
            self._respond()
            return False
        self._rsp_message_id = message_id
        self._rsp_class = sop_class_raw
        self._rsp_instance = None
        self._comment = ""
        if field == dimse.C_ECHO_RQ:
            self._echoes += 1
            self._rsp_field = dimse.C_ECHO_RSP
            self._status = self._call_echo()
        elif field == dimse.C_CANCEL_RQ or field is None or field & dimse.RESPONSE_BIT:
            # Nothing to answer: a cancel for an operation we don't run, or a stray response.
            self._status = None
            self._rsp_field = 0
        else:
            self._rsp_field = field | dimse.RESPONSE_BIT
            self._status = dimse.UNRECOGNIZED_OPERATION
        if has_dataset:
            self._sink = DISCARD_SINK
            self._sink_write = DISCARD_SINK.write
            return True
        self._respond()
        return False

    def _call_echo(self) -> int:
        assert self._info is not None
        try:
            return self._handler.on_echo(self._info)
        except Exception:
            log.exception("on_echo failed for %s", self._describe())
            return dimse.HANDLER_FAILURE

    def _begin_store(
        self,
        context: AcceptedContext,
        cmd: dict[int, bytes],
        message_id: int,
        sop_class_raw: bytes,
        has_dataset: bool,
    ) -> None:
        assert self._info is not None
        instance_raw = cmd.get(dimse.AFFECTED_SOP_INSTANCE_UID, b"")
        self._rsp_field = dimse.C_STORE_RSP
        self._rsp_message_id = message_id
        self._rsp_class = sop_class_raw
        self._rsp_instance = instance_raw
        self._status = None
        self._comment = ""
        sop_class = sop_class_raw.decode("ascii", "replace").rstrip("\0 ")
        if not has_dataset:
            self._refuse(dimse.CANNOT_UNDERSTAND, "C-STORE-RQ without a dataset")
            return
        if sop_class != context.abstract_syntax:
            self._refuse(
                dimse.DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP class differs from the context's"
            )
            return
        ctx = StoreContext(
            self._info,
            sop_class,
            instance_raw.decode("ascii", "replace").rstrip("\0 "),
            context.transfer_syntax,
            context.context_id,
            message_id,
            dimse.command_int(cmd, dimse.PRIORITY) or 0,
            dimse.command_text(cmd, dimse.MOVE_ORIGINATOR_AET),
        )
        try:
            sink = self._handler.open_store(ctx)
        except Exception as exc:
            self._refused_by(exc, "open_store")
            sink = DISCARD_SINK
        self._sink = sink
        self._sink_write = sink.write

    def _refuse(self, status: int, comment: str) -> None:
        """Decide the answer now; the dataset (if any) is read and dropped."""
        self._status = status
        self._comment = comment
        self._sink = DISCARD_SINK
        self._sink_write = DISCARD_SINK.write

    def _refused_by(self, exc: Exception, where: str) -> None:
        """Set the failure answer for an exception raised by the application."""
        status = failure_status(exc)
        if status == dimse.HANDLER_FAILURE:
            log.error("%s failed for a C-STORE from %s", where, self._describe(), exc_info=exc)
        else:
            log.warning("%s refused a C-STORE from %s: %s", where, self._describe(), exc)
        self._status = status
        self._comment = str(exc)

    def _on_data(self, chunk: memoryview) -> None:
        self._bytes += len(chunk)
        try:
            self._sink_write(chunk)
        except Exception as exc:
            self._abort_sink("write failed")
            self._refused_by(exc, "sink.write")
            self._sink = DISCARD_SINK

    def _abort_sink(self, why: str) -> None:
        sink = self._sink
        self._sink = None
        self._sink_write = DISCARD_SINK.write
        if sink is None or sink is DISCARD_SINK:
            return
        log.debug("aborting store from %s: %s", self._describe(), why)
        try:
            sink.abort()
        except Exception:
            log.exception("sink.abort failed for a store from %s", self._describe())

    def _on_dataset_end(self, context_id: int) -> None:
        sink = self._sink
        self._sink = None
        self._sink_write = DISCARD_SINK.write
        if self._status is not None or sink is None or sink is DISCARD_SINK:
            self._respond()
            return
        try:
            result = sink.finish()
        except Exception as exc:
            self._sink = sink
            self._abort_sink("finish failed")
            self._refused_by(exc, "sink.finish")
            self._respond()
            return
        if type(result) is int:
            self._status = result
            self._respond()
            return
        self.halt()
        assert not isinstance(result, int)
        self._finishing = self._loop.create_task(self._await_finish(sink, result))

    async def _await_finish(self, sink: StoreSink, pending: Awaitable[int]) -> None:
        try:
            status = await pending
        except Exception as exc:
            self._sink = sink
            self._abort_sink("finish failed")
            self._refused_by(exc, "sink.finish")
            status = self._status if self._status is not None else dimse.HANDLER_FAILURE
        self._finishing = None
        self._status = status
        if self._state == _DONE:
            # The connection went while the application finished: the peer never gets the
            # answer and will send again (delivery is at-least-once).
            self._count(status)
            self._notify_closed()
            return
        self._respond()
        # The peer waited for this answer: its silence, or a PDU that sat in our buffer
        # meanwhile, is not slowness of its own.
        self._last_rx = self._loop.time()
        if self._pdu_since:
            self._pdu_since = self._last_rx
        self.resume()

    def _count(self, status: int) -> None:
        if dimse.is_success(status):
            self._stored += 1
        else:
            self._failed += 1

    def _respond(self) -> None:
        status = self._status
        self._status = None
        if status is None or not self._rsp_field:
            return
        if self._rsp_field == dimse.C_STORE_RSP:
            self._count(status)
        payload = dimse.encode_response(
            self._rsp_field,
            self._rsp_message_id,
            status,
            self._rsp_class,
            self._rsp_instance,
            self._comment if status else None,
        )
        self.write(
            encode_pdata(self._rsp_context, payload, command=True, max_pdu=self._peer_max_pdu)
        )

    # --- notifications ---------------------------------------------------------------------

    def _notify(self, name: str, *args: object) -> None:
        try:
            getattr(self._handler, name)(*args)
        except Exception:
            log.exception("%s failed", name)

    def _notify_closed(self) -> None:
        self._server.connection_closed(self)
        if self._counted:
            self._counted = False
            self._server.association_ended()
        if self._info is None:
            return
        info = self._info
        self._info = None
        stats = AssociationStats(
            association=info,
            ended_at=time.time(),
            outcome=self._outcome,
            reason="" if self._outcome == "released" else self._reason,
            instances_stored=self._stored,
            instances_failed=self._failed,
            bytes_received=self._bytes,
            echoes=self._echoes,
        )
        log.debug("association %s ended: %s", info.id, self._outcome)
        self._notify("on_association_closed", stats)


def _uid_list(uids: list[str], limit: int = 8) -> str:
    """A bounded rendering of UIDs a peer sent (it chooses how many and how long)."""
    shown = ", ".join(
        uid[:64] if uid[:64].isprintable() else repr(uid[:64]) for uid in uids[:limit]
    )
    return shown + (f" and {len(uids) - limit} more" if len(uids) > limit else "")
