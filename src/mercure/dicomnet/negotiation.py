"""Presentation contexts: what a requestor proposes, and the acceptor's negotiation of them and of
roles (PS3.8 9.3.2.2, PS3.7 D.3.3.4)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from mercure.dicomnet.pdu import (
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED,
    PC_ACCEPTANCE,
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED,
    PC_USER_REJECTION,
    AssociateRequest,
    PresentationContextResult,
    RoleSelection,
)
from mercure.dicomnet.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    is_valid_uid,
    non_storage_uids,
)


@dataclass(frozen=True, slots=True)
class ContextProposal:
    """A presentation context to propose: one SOP class, transfer syntaxes in preference order."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...] = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


@dataclass(frozen=True, slots=True)
class AcceptedContext:
    """A presentation context both sides agreed on."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: str


@dataclass(slots=True)
class Negotiated:
    """The acceptor's answer: one result per proposed context, role replies, accepted contexts,
    and the proposed abstract syntaxes that were refused as not supported (for the log)."""

    results: list[PresentationContextResult]
    role_replies: list[RoleSelection]
    accepted: dict[int, AcceptedContext]
    unsupported: list[str]


def negotiate(
    request: AssociateRequest,
    sop_classes: Collection[str],
    transfer_syntaxes: Sequence[str],
    *,
    accept_unknown: bool = False,
) -> Negotiated:
    """Answer each proposed context as a Storage/Verification SCP.

    ``sop_classes`` are accepted. With ``accept_unknown`` (promiscuous, like storescp's
    ``--promiscuous``) any other abstract syntax that is a valid UID is accepted as a storage
    SOP class too, except the standard's UIDs for other services (Query/Retrieve, worklists,
    Storage Commitment, MPPS, print ...): those stay "abstract syntax not supported". The
    decision is made here, once per association; the DIMSE layer answers anything but C-STORE
    and C-ECHO with "unrecognized operation" whatever the context.

    The transfer syntax chosen is the first one the requestor proposed that we accept: the
    sender lists its preference first, usually the syntax its file is in, and keeping that
    avoids a conversion on its side and keeps the received bytes identical to its file.
    """
    accepted_syntaxes = frozenset(transfer_syntaxes)
    # We can only act as SCP; a requestor that declines the SCU role for a SOP class (C-GET
    # style) leaves nothing to do for that class.
    declined_scu = {r.sop_class_uid for r in request.role_selections if not r.scu_role}
    refused = non_storage_uids() if accept_unknown else frozenset()
    results: list[PresentationContextResult] = []
    accepted: dict[int, AcceptedContext] = {}
    unsupported: list[str] = []
    for ctx in request.contexts:
        placeholder = (
            ctx.transfer_syntaxes[0] if ctx.transfer_syntaxes else IMPLICIT_VR_LITTLE_ENDIAN
        )
        if ctx.abstract_syntax not in sop_classes and not (
            accept_unknown
            and ctx.abstract_syntax not in refused
            and is_valid_uid(ctx.abstract_syntax)
        ):
            results.append(
                PresentationContextResult(
                    ctx.context_id, PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, placeholder
                )
            )
            if ctx.abstract_syntax not in unsupported:
                unsupported.append(ctx.abstract_syntax)
            continue
        if ctx.abstract_syntax in declined_scu:
            results.append(
                PresentationContextResult(ctx.context_id, PC_USER_REJECTION, placeholder)
            )
            continue
        chosen = next((ts for ts in ctx.transfer_syntaxes if ts in accepted_syntaxes), None)
        if chosen is None:
            results.append(
                PresentationContextResult(
                    ctx.context_id, PC_TRANSFER_SYNTAXES_NOT_SUPPORTED, placeholder
                )
            )
            continue
        results.append(PresentationContextResult(ctx.context_id, PC_ACCEPTANCE, chosen))
        accepted[ctx.context_id] = AcceptedContext(ctx.context_id, ctx.abstract_syntax, chosen)
    accepted_classes = {c.abstract_syntax for c in accepted.values()}
    role_replies = [
        RoleSelection(r.sop_class_uid, scu_role=True, scp_role=False)
        for r in request.role_selections
        if r.sop_class_uid in accepted_classes
    ]
    return Negotiated(results, role_replies, accepted, unsupported)
