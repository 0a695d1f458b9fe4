"""What an application plugs into the acceptor: the handler, the per-instance sink, and the
values they are given.

Handler methods come in two kinds (as in pynetdicom): *interventions* whose return value is
the answer (:meth:`AssociationHandler.accept_association`, :meth:`~AssociationHandler.open_store`,
:meth:`~AssociationHandler.on_echo`) and *notifications* whose errors are logged and otherwise
ignored (``on_association_*``). All are called on the event loop and must not block for long.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mercure.dicomnet.dimse import (
    HANDLER_FAILURE,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
)
from mercure.dicomnet.errors import StoreRefused
from mercure.dicomnet.negotiation import AcceptedContext
from mercure.dicomnet.pdu import (
    REJECTED_PERMANENT,
    REJECTED_TRANSIENT,
    SOURCE_PROVIDER_PRESENTATION,
    SOURCE_SERVICE_USER,
    AssociateRequest,
    PresentationContextProposal,
    UserIdentity,
    describe_rejection,
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An A-ASSOCIATE-RJ answer: result (1 permanent, 2 transient), source and reason."""

    result: int
    source: int
    reason: int

    def __str__(self) -> str:
        return describe_rejection(self.result, self.source, self.reason)


REJECT_NO_REASON = Rejection(REJECTED_PERMANENT, SOURCE_SERVICE_USER, 1)
REJECT_CALLING_AET = Rejection(REJECTED_PERMANENT, SOURCE_SERVICE_USER, 3)
"""Calling AE title not recognised (not on the allow-list)."""
REJECT_CALLED_AET = Rejection(REJECTED_PERMANENT, SOURCE_SERVICE_USER, 7)
"""Called AE title not recognised (not this listener's title)."""
REJECT_CONGESTION = Rejection(REJECTED_TRANSIENT, SOURCE_PROVIDER_PRESENTATION, 1)
"""Temporary congestion: try again later (e.g. the disk is nearly full)."""
REJECT_LOCAL_LIMIT = Rejection(REJECTED_TRANSIENT, SOURCE_PROVIDER_PRESENTATION, 2)
"""Local limit exceeded: the listener's maximum of concurrent associations is reached."""


@dataclass(frozen=True, slots=True)
class AssociationRequest:
    """What is known when an association is requested; given to ``accept_association``."""

    calling_aet: str
    called_aet: str
    peer_host: str
    peer_port: int
    contexts: tuple[PresentationContextProposal, ...] = field(repr=False)
    implementation_class_uid: str
    implementation_version_name: str
    user_identity: UserIdentity | None
    peer_certificate: dict[str, Any] | None
    """The TLS client certificate (``ssl.SSLSocket.getpeercert()``), None without TLS or cert."""

    @classmethod
    def from_pdu(
        cls, rq: AssociateRequest, peer: tuple[str, int], certificate: dict[str, Any] | None
    ) -> AssociationRequest:
        """The request as the handler sees it, from the decoded A-ASSOCIATE-RQ."""
        return cls(
            calling_aet=rq.calling_aet,
            called_aet=rq.called_aet,
            peer_host=peer[0],
            peer_port=peer[1],
            contexts=tuple(rq.contexts),
            implementation_class_uid=rq.implementation_class_uid,
            implementation_version_name=rq.implementation_version_name,
            user_identity=rq.user_identity,
            peer_certificate=certificate,
        )


@dataclass(frozen=True, slots=True)
class AssociationInfo:
    """An accepted association; shared by every :class:`StoreContext` of it."""

    id: int
    calling_aet: str
    called_aet: str
    peer_host: str
    peer_port: int
    contexts: tuple[AcceptedContext, ...] = field(repr=False)
    peer_max_pdu: int
    tls: bool
    started_at: float
    """Wall-clock time (``time.time()``) the association was accepted."""


class StoreContext:
    """One C-STORE request: who sends which instance in which transfer syntax."""

    __slots__ = (
        "association",
        "context_id",
        "message_id",
        "move_originator_aet",
        "priority",
        "sop_class_uid",
        "sop_instance_uid",
        "transfer_syntax_uid",
    )

    def __init__(
        self,
        association: AssociationInfo,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        context_id: int,
        message_id: int,
        priority: int,
        move_originator_aet: str,
    ) -> None:
        self.association = association
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax_uid = transfer_syntax_uid
        self.context_id = context_id
        self.message_id = message_id
        self.priority = priority
        self.move_originator_aet = move_originator_aet

    @property
    def calling_aet(self) -> str:
        """The sender's AE title."""
        return self.association.calling_aet

    @property
    def called_aet(self) -> str:
        """The AE title the sender called (this listener's)."""
        return self.association.called_aet

    @property
    def peer_address(self) -> tuple[str, int]:
        """The sender's (host, port)."""
        return (self.association.peer_host, self.association.peer_port)

    def __repr__(self) -> str:
        return (
            f"StoreContext(sop_instance_uid={self.sop_instance_uid!r}, "
            f"transfer_syntax_uid={self.transfer_syntax_uid!r}, calling_aet={self.calling_aet!r})"
        )


class StoreSink(Protocol):
    """Receives one instance's dataset bytes, as they arrive, and decides its status.

    ``write`` gets consecutive chunks of the dataset exactly as sent (no File Meta). A chunk is
    a view of the connection's receive buffer, valid only during the call: write or copy it,
    never keep it. ``finish`` is called after the last chunk; its status goes into the
    C-STORE-RSP, so acknowledge only what is durable. It may return the status directly
    (fastest) or an awaitable of it (e.g. ``async def finish``); parsing of the association
    waits for it either way. ``abort`` is called instead of ``finish`` when the association
    ends mid-dataset, or after ``write``/``finish`` raised: remove partial files there. Raise
    :class:`~mercure.dicomnet.errors.StoreRefused` from any of them to answer a given status.
    """

    def write(self, chunk: memoryview) -> None: ...

    def finish(self) -> int | Awaitable[int]: ...

    def abort(self) -> None: ...


class DiscardSink:
    """Reads a dataset and drops it; ``finish`` answers ``status``. For answers decided up
    front (the acceptor uses it for refused instances) and for benchmarks."""

    def __init__(self, status: int = SUCCESS) -> None:
        self.status = status

    def write(self, chunk: memoryview) -> None:
        """Drop the chunk."""

    def finish(self) -> int:
        """Answer the configured status."""
        return self.status

    def abort(self) -> None:
        """Nothing to clean up."""


DISCARD_SINK = DiscardSink()


def failure_status(exc: BaseException) -> int:
    """The C-STORE status for an exception from an application's handler or sink.

    StoreRefused carries its own; a full disk or quota is Out of Resources (0xA700); anything
    else is 0xC211 (the handler failed).
    """
    if isinstance(exc, StoreRefused):
        return exc.status
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OUT_OF_RESOURCES
    return HANDLER_FAILURE


Outcome = Literal["released", "aborted_by_peer", "aborted_locally", "connection_lost"]


@dataclass(slots=True)
class AssociationStats:
    """How an association went; given to ``on_association_closed``."""

    association: AssociationInfo
    ended_at: float
    outcome: Outcome
    reason: str
    """Why it ended when not released (timeout, protocol error, peer abort ...), else ''."""
    instances_stored: int
    """C-STORE requests answered with a success or warning status."""
    instances_failed: int
    bytes_received: int
    """Dataset bytes received (all C-STOREs, failed ones included)."""
    echoes: int

    @property
    def released(self) -> bool:
        """True when the association ended with an orderly A-RELEASE."""
        return self.outcome == "released"


class AssociationHandler:
    """Base class for applications on the acceptor; override what you need.

    The defaults accept every association, answer C-ECHO with success, and refuse C-STORE
    (an application that stores must override :meth:`open_store`).
    """

    def accept_association(self, request: AssociationRequest) -> Rejection | None:
        """Intervention: None accepts; a :class:`Rejection` (``REJECT_CALLING_AET`` ...) rejects."""
        return None

    def open_store(self, context: StoreContext) -> StoreSink:
        """Intervention: return the sink for one incoming instance.

        Raise :class:`~mercure.dicomnet.errors.StoreRefused` to answer a status without
        receiving (the dataset is then read and dropped), e.g. 0xA700 when the disk is full.
        """
        raise StoreRefused(SOP_CLASS_NOT_SUPPORTED, "this handler does not store instances")

    def on_echo(self, association: AssociationInfo) -> int:
        """Intervention: the C-ECHO-RSP status."""
        return SUCCESS

    def on_association_opened(self, association: AssociationInfo) -> None:
        """Notification: an association was accepted."""

    def on_association_rejected(self, request: AssociationRequest, rejection: Rejection) -> None:
        """Notification: an association request was rejected (by this handler or a limit)."""

    def on_association_closed(self, stats: AssociationStats) -> None:
        """Notification: an accepted association ended (released, aborted or lost)."""
