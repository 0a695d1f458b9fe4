"""The receiver's association handler: who may connect, where instances go, what is reported."""

from __future__ import annotations

import ipaddress
import logging
import os

from mercure.core.config.models import ListenerConfig
from mercure.core.events import EventClient
from mercure.core.ingest.diskguard import DiskGuard
from mercure.core.ingest.placement import AssociationState, Placer
from mercure.dicomnet.dimse import OUT_OF_RESOURCES
from mercure.dicomnet.errors import StoreRefused
from mercure.dicomnet.handler import (
    REJECT_CALLED_AET,
    REJECT_CALLING_AET,
    REJECT_NO_REASON,
    AssociationHandler,
    AssociationInfo,
    AssociationRequest,
    AssociationStats,
    Rejection,
    StoreContext,
    StoreSink,
)
from mercure.dicomnet.pdu import shown_title

log = logging.getLogger(__name__)

MAX_SERIES_IN_EVENT = 256
"""``association.closed`` lists at most this many series UIDs (and always the count): one
association of a PACS migration can carry tens of thousands of series."""


class ReceiverHandler(AssociationHandler):
    """Handles the associations of one listener."""

    def __init__(
        self,
        listener: ListenerConfig,
        placer: Placer,
        events: EventClient,
        disk: DiskGuard,
    ) -> None:
        self.listener = listener
        self.placer = placer
        self.events = events
        self.disk = disk
        self._networks = [ipaddress.ip_network(n) for n in listener.allowed_networks]
        # Titles arrive with their padding spaces trimmed and nothing else (the acceptor has
        # refused control characters): compare exactly, after the same trimming of ours.
        self._aet = listener.aet.strip(" ")
        self._allowed_calling_aets = frozenset(
            aet.strip(" ") for aet in listener.allowed_calling_aets
        )
        self._states: dict[int, AssociationState] = {}

    def accept_association(self, request: AssociationRequest) -> Rejection | None:
        """Check the called AE title and the allow-lists."""
        if request.called_aet != self._aet:
            return REJECT_CALLED_AET
        if self._allowed_calling_aets and request.calling_aet not in self._allowed_calling_aets:
            return REJECT_CALLING_AET
        if self._networks:
            try:
                address = ipaddress.ip_address(request.peer_host)
            except ValueError:
                return REJECT_NO_REASON
            if not any(address in network for network in self._networks):
                return REJECT_NO_REASON
        return None

    def on_association_rejected(self, request: AssociationRequest, rejection: Rejection) -> None:
        """Report who was turned away and why."""
        log.warning(
            "association from %s (%s) to %s rejected: %s",
            shown_title(request.calling_aet),
            request.peer_host,
            shown_title(request.called_aet),
            rejection,
        )
        self.events.emit(
            "association.rejected",
            severity="warning",
            message=str(rejection),
            calling_aet=request.calling_aet,
            called_aet=request.called_aet,
            address=request.peer_host,
            listener=self.listener.name,
        )

    def on_association_opened(self, association: AssociationInfo) -> None:
        """Start keeping state for a new association."""
        self.placer.associations += 1
        key = f"{self.listener.name}-{os.getpid()}-{association.id}"
        self._states[association.id] = AssociationState(
            key=key,
            listener=self.listener.name,
            calling_aet=association.calling_aet.strip(),
            called_aet=association.called_aet.strip(),
            address=association.peer_host,
        )
        self.events.emit(
            "association.opened",
            calling_aet=association.calling_aet.strip(),
            called_aet=association.called_aet.strip(),
            address=association.peer_host,
            listener=self.listener.name,
            association=key,
            tls=association.tls,
        )

    def open_store(self, context: StoreContext) -> StoreSink:
        """A sink for one instance, or Out of Resources when the disk is at its floor."""
        if not self.disk.admit():
            raise StoreRefused(OUT_OF_RESOURCES, "free disk space below the configured floor")
        return self.disk.guard(self.placer.open_sink(self._states[context.association.id], context))

    def on_association_closed(self, stats: AssociationStats) -> None:
        """Journal the release per series, let the series go, and report the association."""
        state = self._states.pop(stats.association.id, None)
        if state is None:
            return
        self.placer.associations -= 1
        self.placer.release(state, released=stats.released)
        self.events.emit(
            "association.closed",
            calling_aet=state.calling_aet,
            called_aet=state.called_aet,
            address=state.address,
            listener=self.listener.name,
            association=state.key,
            outcome=stats.outcome,
            reason=stats.reason,
            instances=stats.instances_stored,
            failed=stats.instances_failed,
            bytes=stats.bytes_received,
            series=sorted(state.series_seen)[:MAX_SERIES_IN_EVENT],
            series_count=len(state.series_seen),
            seconds=round(stats.ended_at - stats.association.started_at, 3),
        )
