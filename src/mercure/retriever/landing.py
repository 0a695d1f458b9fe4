"""Where C-GET and WADO-RS instances land: the receiver's write path, as C-STORE'd ones do.

One :class:`Landing` per process: the placer (with the retriever's own staging folder under
``incoming/.receiving/``) and the disk guard (``receiver.min_free_disk_mb``: below the floor an
instance is refused, the fetch falls short and is tried again later, nothing is half kept).
Each fetch is one :class:`Arrival`, the counterpart of a receiver's association: it holds the
series folders it writes to and journals their release at its end.
"""

from __future__ import annotations

import itertools
import os
from types import TracebackType

from mercure.core.ingest.diskguard import DiskGuard
from mercure.core.ingest.placement import AssociationState, Placer
from mercure.dicomnet.dimse import OUT_OF_RESOURCES
from mercure.dicomnet.errors import StoreRefused
from mercure.dicomnet.handler import StoreContext, StoreSink

LISTENER = "retrieve"
"""The ``listener`` of the journal lines of retrieved instances."""

_numbers = itertools.count(1)


class Landing:
    """The placer and disk guard every fetch of the process shares."""

    def __init__(self, placer: Placer, disk: DiskGuard) -> None:
        self.placer = placer
        self.disk = disk

    def arrival(self, sender_aet: str, receiver_aet: str, address: str) -> Arrival:
        """A fetch from ``sender_aet`` (the series' SenderAET) to us (its ReceiverAET)."""
        key = f"{LISTENER}-{os.getpid()}-{next(_numbers)}"
        state = AssociationState(
            key=key,
            listener=LISTENER,
            calling_aet=sender_aet,
            called_aet=receiver_aet,
            address=address,
        )
        return Arrival(self, state)


class Arrival:
    """One fetch's instances; use as a context manager (``released`` when it ended well)."""

    def __init__(self, landing: Landing, state: AssociationState) -> None:
        self.landing = landing
        self.state = state
        self.released = False

    def open_store(self, context: StoreContext) -> StoreSink:
        """The sink of one instance (Out of Resources at the disk floor)."""
        disk = self.landing.disk
        if not disk.admit():
            raise StoreRefused(OUT_OF_RESOURCES, "free disk space below the configured floor")
        return disk.guard(self.landing.placer.open_sink(self.state, context))

    def __enter__(self) -> Arrival:
        self.landing.placer.associations += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        placer = self.landing.placer
        placer.associations -= 1
        placer.release(self.state, released=self.released and exc_type is None)
