"""C-FIND as SCU (PS3.4 annex C.4.1): the query side of the requestor.

A C-FIND is one request followed by one pending response per match, each carrying the match
as an identifier dataset, then one final response (Success, Cancel, or a failure status with
the peer's comment). It has the shape of a C-MOVE, so :class:`FindOperation` plugs into the
requestor's connection as :class:`~mercure.dicomnet.retrieve.RetrieveOperation` does, and
:meth:`~mercure.dicomnet.requestor.Association.find` awaits it with the same silence-based
DIMSE timeout.

A query is off the hot path: each match is decoded with pydicom, once, when its dataset is
complete. What the peer may send is bounded: a match larger than :data:`MAX_MATCH_BYTES` is
not kept, and past the caller's ``limit`` the query is cancelled with C-CANCEL-RQ; in both
cases the responses are still read up to the final one, so the association stays usable.
"""

from __future__ import annotations

import asyncio
import io
import logging

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from mercure.dicomnet import dimse
from mercure.dicomnet.connection import UpperLayerConnection
from mercure.dicomnet.errors import AssociationError, FindFailed
from mercure.dicomnet.negotiation import AcceptedContext, ContextProposal
from mercure.dicomnet.pdu import encode_pdata
from mercure.dicomnet.retrieve import Model, find_class
from mercure.dicomnet.uids import is_big_endian, is_implicit_vr

log = logging.getLogger(__name__)

MAX_MATCH_BYTES = 1 << 20
"""Largest match identifier kept: return keys of one study or series are a few hundred bytes;
a megabyte is a peer sending something else."""

_PENDING = frozenset({dimse.PENDING, dimse.PENDING_WITH_WARNINGS})


def find_contexts(model: Model = "study") -> list[ContextProposal]:
    """The presentation context to propose for C-FIND."""
    return [ContextProposal(find_class(model))]


def _convert(_ds: Dataset, _element: DataElement) -> None:
    """Nothing: walking a dataset converts each raw element, which is the point."""


def decode_match(data: bytes, transfer_syntax_uid: str) -> Dataset:
    """A match identifier as a pydicom Dataset with every element (nested ones too) decoded,
    so that a malformed value fails here and not in the caller's hands."""
    implicit = is_implicit_vr(transfer_syntax_uid)
    ds = read_dataset(io.BytesIO(data), implicit, not is_big_endian(transfer_syntax_uid))
    ds.walk(_convert)
    return ds


class FindOperation:
    """One C-FIND in progress on a requestor connection; ``done`` gets the matches.

    Past ``limit`` matches it sends C-CANCEL-RQ once and drops what still comes; a failure
    status, a match that cannot be read or one over :data:`MAX_MATCH_BYTES` make ``done`` a
    :class:`FindFailed` once the final response has arrived.
    """

    finishing: asyncio.Task[None] | None = None
    """Always None: a C-FIND receives no instances (the requestor's interface wants it)."""

    def __init__(
        self,
        connection: UpperLayerConnection,
        *,
        where: str,
        message_id: int,
        context: AcceptedContext,
        peer_max_pdu: int,
        limit: int | None = None,
    ) -> None:
        self._conn = connection
        self._where = where
        self.message_id = message_id
        self.context = context
        self._peer_max_pdu = peer_max_pdu
        self._limit = limit
        self.done: asyncio.Future[list[Dataset]] = asyncio.get_running_loop().create_future()
        self.matches: list[Dataset] = []
        self.cancelled = False
        """True once we sent C-CANCEL-RQ."""
        self.responses = 0
        """Pending responses seen (a match, or one without an identifier)."""
        self._identifier = bytearray()
        self._collecting = False
        self._oversized = False
        self._problem = ""
        """Why the matches are not to be trusted (an unreadable or oversized one)."""
        self._final: tuple[int, str] | None = None

    # --- messages from the connection ------------------------------------------------------

    def on_command(self, context_id: int, cmd: dict[int, bytes]) -> bool:
        """A complete command set; True when a dataset follows."""
        has_dataset = dimse.command_int(cmd, dimse.COMMAND_DATA_SET_TYPE) != dimse.NO_DATASET
        self._collecting = False
        field = dimse.command_int(cmd, dimse.COMMAND_FIELD)
        if (
            field != dimse.C_FIND_RSP
            or dimse.command_int(cmd, dimse.MESSAGE_ID_BEING_RESPONDED_TO) != self.message_id
        ):
            log.debug("ignoring an unexpected message (command 0x%04X) during a C-FIND", field)
            return has_dataset
        status = dimse.command_int(cmd, dimse.STATUS)
        if status in _PENDING:
            self.responses += 1
            if not has_dataset:
                log.debug("%s sent a pending C-FIND response without a match", self._where)
            elif self._wanted():
                self._identifier.clear()
                self._oversized = False
                self._collecting = True
            return has_dataset
        # Never read a missing status as success: the matches may be incomplete.
        self._final = (
            dimse.CANNOT_UNDERSTAND if status is None else status,
            dimse.command_text(cmd, dimse.ERROR_COMMENT),
        )
        if not has_dataset:
            self._complete()
        return has_dataset

    def on_data(self, chunk: memoryview) -> None:
        """A fragment of the current message's dataset."""
        if not self._collecting:
            return
        if len(self._identifier) + len(chunk) > MAX_MATCH_BYTES:
            self._collecting = False
            self._oversized = True
            self._identifier.clear()
            return
        self._identifier += chunk

    def on_dataset_end(self) -> None:
        """The current message's dataset is complete."""
        if self._final is not None:
            self._complete()  # a final response's dataset (not expected of C-FIND): dropped
            return
        if self._oversized:
            self._oversized = False
            self._stop(f"a match larger than {MAX_MATCH_BYTES:,} bytes")
            return
        if not self._collecting:
            return
        self._collecting = False
        data = bytes(self._identifier)
        self._identifier.clear()
        try:
            match = decode_match(data, self.context.transfer_syntax)
        except Exception as exc:
            # The exception's text may quote values of the match (patient data): debug only.
            log.debug("unreadable C-FIND match from %s: %s", self._where, exc)
            number = len(self.matches) + 1
            self._stop(f"match {number} that is not a readable dataset ({type(exc).__name__})")
            return
        self.matches.append(match)
        if self._limit is not None and len(self.matches) >= self._limit:
            self._cancel()

    def on_failure(self, error: AssociationError) -> None:
        """The association ended: the C-FIND fails with it."""
        if not self.done.done():
            self.done.set_exception(error)
            self.done.exception()  # retrieved here: the caller may be gone

    def close(self) -> None:
        """The request is over or abandoned: nothing to clean up but the buffer."""
        self._identifier.clear()

    # --- internals -------------------------------------------------------------------------

    def _wanted(self) -> bool:
        return not self.cancelled and not self._problem

    def _stop(self, problem: str) -> None:
        """The matches cannot be trusted: remember why, and ask the peer to stop."""
        self._problem = problem
        self._cancel()

    def _cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self._conn.write(
            encode_pdata(
                self.context.context_id,
                dimse.encode_c_cancel_rq(self.message_id),
                command=True,
                max_pdu=self._peer_max_pdu,
            )
        )

    def _complete(self) -> None:
        assert self._final is not None
        if self.done.done():
            return
        status, comment = self._final
        if self._problem:
            message = f"{self._where} answered a C-FIND with {self._problem}"
            self.done.set_exception(FindFailed(status, comment, message, self._problem))
        elif status == dimse.SUCCESS or (status == dimse.CANCEL and self.cancelled):
            self.done.set_result(self.matches)
        else:
            said = f": {comment}" if comment else ""
            self.done.set_exception(
                FindFailed(
                    status,
                    comment,
                    f"{self._where} answered a C-FIND with status 0x{status:04X}{said}",
                )
            )
