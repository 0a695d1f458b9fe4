"""A handler that keeps what it receives in memory: the test double of the acceptor.

Tests of anything that sends DICOM (the dispatcher, the requestor) run a real
:class:`~mercure.dicomnet.server.DicomServer` with a :class:`RecordingHandler` and then look at
``handler.instances``: every dataset exactly as it arrived, with its context.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from mercure.dicomnet.dimse import SUCCESS
from mercure.dicomnet.handler import (
    AssociationHandler,
    AssociationInfo,
    AssociationRequest,
    AssociationStats,
    Rejection,
    StoreContext,
)


@dataclass(frozen=True, slots=True)
class ReceivedInstance:
    """One completed C-STORE: its context and the dataset bytes as sent (no File Meta)."""

    context: StoreContext
    dataset: bytes


class RecordingSink:
    """Collects one dataset in memory."""

    def __init__(self, handler: RecordingHandler, context: StoreContext) -> None:
        self._handler = handler
        self._context = context
        self._data = bytearray()

    def write(self, chunk: memoryview) -> None:
        """Append a chunk."""
        self._data += chunk

    def finish(self) -> int:
        """Record the instance; answer the handler's ``status``."""
        with self._handler.lock:
            self._handler.instances.append(ReceivedInstance(self._context, bytes(self._data)))
        return self._handler.status

    def abort(self) -> None:
        """Record the abort of a partial dataset."""
        with self._handler.lock:
            self._handler.aborted.append(self._context)


class RecordingHandler(AssociationHandler):
    """Records instances, aborts, echoes and association events; thread-safe to read.

    ``accept`` (optional) decides on association requests; ``status`` is the C-STORE answer.
    """

    def __init__(
        self,
        accept: Callable[[AssociationRequest], Rejection | None] | None = None,
        status: int = SUCCESS,
    ) -> None:
        self.lock = threading.Lock()
        self.status = status
        self._accept = accept
        self.instances: list[ReceivedInstance] = []
        self.aborted: list[StoreContext] = []
        self.opened: list[AssociationInfo] = []
        self.closed: list[AssociationStats] = []
        self.rejected: list[tuple[AssociationRequest, Rejection]] = []
        self.echoes = 0

    def accept_association(self, request: AssociationRequest) -> Rejection | None:
        """Ask ``accept`` if given, else accept."""
        return self._accept(request) if self._accept is not None else None

    def open_store(self, context: StoreContext) -> RecordingSink:
        """A sink that records the dataset."""
        return RecordingSink(self, context)

    def on_echo(self, association: AssociationInfo) -> int:
        """Count the echo, answer success."""
        with self.lock:
            self.echoes += 1
        return SUCCESS

    def on_association_opened(self, association: AssociationInfo) -> None:
        """Record the association."""
        with self.lock:
            self.opened.append(association)

    def on_association_rejected(self, request: AssociationRequest, rejection: Rejection) -> None:
        """Record the rejection."""
        with self.lock:
            self.rejected.append((request, rejection))

    def on_association_closed(self, stats: AssociationStats) -> None:
        """Record the statistics."""
        with self.lock:
            self.closed.append(stats)

    def datasets_by_uid(self) -> dict[str, bytes]:
        """Received datasets keyed by SOP Instance UID (the last one wins)."""
        with self.lock:
            return {i.context.sop_instance_uid: i.dataset for i in self.instances}
