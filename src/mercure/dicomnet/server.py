"""The listening side: one :class:`DicomServer` per (port, AE title) listener."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from mercure.dicomnet.acceptor import AcceptorConnection
from mercure.dicomnet.handler import AssociationHandler
from mercure.dicomnet.uids import ALL_TRANSFER_SYNTAXES, default_sop_classes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenerSettings:
    """How one listener negotiates and protects itself. The caller builds it from its config."""

    ae_title: str = "MERCURE"
    """Used in the A-ASSOCIATE-AC when the request's called AE field is empty."""
    host: str | None = None
    """Address to bind; None binds all interfaces."""
    port: int = 11112
    transfer_syntaxes: Sequence[str] = ALL_TRANSFER_SYNTAXES
    sop_classes: Collection[str] = field(default_factory=default_sop_classes)
    accept_unknown_sop_classes: bool = False
    """Also accept abstract syntaxes the standard does not define, as storage (promiscuous)."""
    max_associations: int = 32
    """More concurrent associations are rejected (transient, local limit exceeded)."""
    max_pdu: int = 262144
    """Maximum PDU length we receive (advertised in the A-ASSOCIATE-AC)."""
    ssl_context: ssl.SSLContext | None = None
    """TLS: the caller configures certificates and whether a client certificate is required."""
    acse_timeout: float = 30.0
    """ARTIM: seconds a new connection may take to send its A-ASSOCIATE-RQ."""
    idle_timeout: float = 60.0
    """Seconds an association may stay silent before it is aborted."""
    pdu_timeout: float | None = 60.0
    """Seconds from the first byte of a PDU to its last; a slower PDU aborts the association
    (every byte resets the idle timer, so a trickling sender would otherwise stay). None: off."""
    max_association_duration: float | None = None
    """Seconds an association may last, whatever it does; None: no limit."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT, so that several processes listen on one port and the kernel
    spreads new connections over them."""
    read_buffer_size: int = 262144


class DicomServer:
    """A DICOM listener: accepts associations and hands their work to ``handler``.

    Use as ``server = DicomServer(settings, handler); await server.start()`` (or
    ``async with``), then ``await server.shutdown()``.
    """

    def __init__(self, settings: ListenerSettings, handler: AssociationHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.active_associations = 0
        self._connections: set[AcceptorConnection] = set()
        self._server: asyncio.Server | None = None
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._server = await loop.create_server(
            lambda: AcceptorConnection(self),
            host=self.settings.host,
            port=self.settings.port,
            ssl=self.settings.ssl_context,
            ssl_handshake_timeout=self.settings.acse_timeout if self.settings.ssl_context else None,
            reuse_address=True,
            reuse_port=self.settings.reuse_port or None,
        )
        log.info(
            "listening as %s on port %s%s",
            self.settings.ae_title,
            self.port,
            " (TLS)" if self.settings.ssl_context else "",
        )

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self.settings.port
        # With host None and port 0 each address family gets its own port: prefer IPv4's.
        sockets = sorted(self._server.sockets, key=lambda sock: sock.family != socket.AF_INET)
        return int(sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Open connections, associations being set up included."""
        return len(self._connections)

    def connection_opened(self, connection: AcceptorConnection) -> None:
        """Called by a connection when it is made."""
        self._connections.add(connection)
        if self._idle is not None:
            self._idle.clear()

    def connection_closed(self, connection: AcceptorConnection) -> None:
        """Called by a connection when it is lost."""
        self._connections.discard(connection)
        if not self._connections and self._idle is not None:
            self._idle.set()

    def association_started(self) -> None:
        """Called when an association is accepted (counts towards ``max_associations``)."""
        self.active_associations += 1

    def association_ended(self) -> None:
        """Called when an accepted association is over (and its last answer decided)."""
        self.active_associations -= 1

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop listening, let open associations end for up to ``grace`` s, then abort them."""
        if self._server is not None:
            self._server.close()
        if self._idle is not None and self._connections:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                log.warning(
                    "aborting %d associations still open at shutdown", len(self._connections)
                )
                for connection in list(self._connections):
                    connection.abort("server shutting down")
                try:
                    await asyncio.wait_for(self._idle.wait(), 2.0)
                except TimeoutError:
                    # Peers that do not read keep the A-ABORT in our buffer: drop them.
                    for connection in list(self._connections):
                        connection.force_close()
                    await self._idle.wait()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> DicomServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown(grace=0)


async def serve(settings: ListenerSettings, handler: AssociationHandler) -> DicomServer:
    """Start a listener; shorthand for ``DicomServer(settings, handler).start()``."""
    server = DicomServer(settings, handler)
    await server.start()
    return server
