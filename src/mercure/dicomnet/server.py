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
    shared_sockets: tuple[socket.socket, ...] = ()
    """Listening sockets this process shares with others (inherited from the receiver's
    parent): the server accepts from them instead of binding ``host``/``port``, and a process
    that already serves associations leaves new ones to idle processes (:class:`SharedAcceptor`)."""
    read_buffer_size: int = 262144


ACCEPT_BACKOFF = 0.02
"""On a shared listening socket, seconds a process waits per association it already serves
before it takes a new connection: an idle process takes it first, and when none is idle the
least busy one does."""

_connections_in_process = 0
"""Connections open in this process, over every listener: how busy it is."""


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
        self._shared: list[SharedAcceptor] = []
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        """Bind (or take the shared socket) and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        if self.settings.shared_sockets:
            self._shared = [SharedAcceptor(self, sock) for sock in self.settings.shared_sockets]
            for acceptor in self._shared:
                acceptor.start()
            log.info(
                "listening as %s on port %s%s (shared with the other receiver processes)",
                self.settings.ae_title,
                self.port,
                " (TLS)" if self.settings.ssl_context else "",
            )
            return
        self._server = await loop.create_server(
            lambda: AcceptorConnection(self),
            host=self.settings.host,
            port=self.settings.port,
            ssl=self.settings.ssl_context,
            ssl_handshake_timeout=self.settings.acse_timeout if self.settings.ssl_context else None,
            reuse_address=True,
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
        if self.settings.shared_sockets:
            return int(self.settings.shared_sockets[0].getsockname()[1])
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
        global _connections_in_process
        if connection not in self._connections:
            _connections_in_process += 1
        self._connections.add(connection)
        if self._idle is not None:
            self._idle.clear()

    def connection_closed(self, connection: AcceptorConnection) -> None:
        """Called by a connection when it is lost."""
        global _connections_in_process
        if connection in self._connections:
            _connections_in_process -= 1
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
        for acceptor in self._shared:
            acceptor.stop()
        self._shared = []
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


class SharedAcceptor:
    """Accepts a server's connections from a listening socket shared by several processes.

    Every process waiting on the socket wakes for a new connection. One that serves no
    association takes it at once; one that serves ``n`` waits ``n * ACCEPT_BACKOFF`` s first, and
    finds it taken if another was quicker. So associations spread one per process while there
    are idle processes, as ``storescp --fork`` gives each its own process, and the least busy
    process takes the next one when there are not. (A hash, as ``SO_REUSEPORT`` spreads them,
    puts two of four associations in one process of four most of the time.)
    """

    def __init__(self, server: DicomServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._waiting: asyncio.TimerHandle | None = None
        self._reading = False
        self._stopped = False
        self._handshakes: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        """Watch the socket for connections."""
        self._sock.setblocking(False)
        self._watch()

    def stop(self) -> None:
        """Take no more connections (the socket stays open: it belongs to the parent)."""
        self._stopped = True
        self._unwatch()
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        for task in self._handshakes:
            task.cancel()  # a TLS handshake under way: the connection is dropped

    def _watch(self) -> None:
        if not self._reading and not self._stopped:
            self._loop.add_reader(self._sock.fileno(), self._readable)
            self._reading = True

    def _unwatch(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _readable(self) -> None:
        busy = _connections_in_process
        if not busy:
            self._accept()
            return
        self._unwatch()
        self._waiting = self._loop.call_later(busy * ACCEPT_BACKOFF, self._accept_late)

    def _accept_late(self) -> None:
        self._waiting = None
        if self._stopped:
            return
        self._accept()
        self._watch()

    def _accept(self) -> None:
        global _connections_in_process
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another process took it, or the peer gave up meanwhile
        except OSError as exc:
            # Out of descriptors or memory: leave the connection to the other processes a while.
            log.error("cannot accept a connection on port %s: %s", self._server.port, exc)
            self._unwatch()
            self._waiting = self._loop.call_later(1.0, self._accept_late)
            return
        conn.setblocking(False)
        # Counted from now, so that this process is busy before the connection is made (a
        # TLS handshake takes a while).
        _connections_in_process += 1
        task = self._loop.create_task(self._connect(conn))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _connect(self, conn: socket.socket) -> None:
        global _connections_in_process
        settings = self._server.settings
        try:
            await self._loop.connect_accepted_socket(
                lambda: AcceptorConnection(self._server),
                conn,
                ssl=settings.ssl_context,
                ssl_handshake_timeout=settings.acse_timeout if settings.ssl_context else None,
            )
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:  # TLS refused, timed out, reset: this connection only
            log.info("connection on port %s failed before it began: %s", self._server.port, exc)
            conn.close()
        finally:
            _connections_in_process -= 1


async def serve(settings: ListenerSettings, handler: AssociationHandler) -> DicomServer:
    """Start a listener; shorthand for ``DicomServer(settings, handler).start()``."""
    server = DicomServer(settings, handler)
    await server.start()
    return server
