"""``mercure receiver``: serves every configured DICOM listener until stopped."""

from __future__ import annotations

import asyncio
import logging

from mercure.core.config import LoadedConfig
from mercure.core.config.models import ListenerConfig, ReceiverConfig
from mercure.core.datafolder import Stage
from mercure.core.ingest.diskguard import DiskGuard
from mercure.core.ingest.placement import Placer
from mercure.core.ingest.staging import Staging
from mercure.core.logs import log_context
from mercure.core.service import Service
from mercure.dicomnet import scanner
from mercure.dicomnet.server import DicomServer
from mercure.receiver.handler import ReceiverHandler
from mercure.receiver.listeners import (
    LISTEN_RETRY_SECONDS,
    ListenerError,
    cannot_listen,
    listener_settings,
    report_cannot_open,
)
from mercure.receiver.processes import (
    STOW_PROCESS,
    ReceiverParent,
    address_key,
    child_index,
    inherited_sockets,
)
from mercure.receiver.stow import StowApp
from mercure.receiver.stowserver import StowServer

log = logging.getLogger(__name__)

STOW = "(STOW-RS)"
"""The STOW-RS endpoint's key among the listeners that could not be opened (no listener name
looks like it)."""


class ReceiverService(Service):
    """The DICOM Storage SCP: one event loop serves every association of every listener, and
    the STOW-RS endpoint when configured.

    With ``receiver.processes`` above 1 this process only starts and watches that many
    receivers (:class:`ReceiverParent`); each of them shares the listeners' ports.
    """

    name = "receiver"
    fast_event_loop = True
    process_index: int | None = None
    """This process's number among several receiver processes; None when it is the only one."""

    def run(self) -> int:
        """Serve, or be the parent of several receiver processes."""
        self.process_index = child_index()
        if self.process_index is not None or self.config.receiver.process_count() == 1:
            return super().run()
        parent = ReceiverParent(self.source, self.instance, self.events, self.data.run_dir)
        self.deliverer.start()
        try:
            with log_context(service=self.name):
                return parent.run()
        finally:
            self.deliverer.stop()
            self.outbox.close()

    async def setup(self) -> None:
        """Recover the staging area and prepare the placer; listeners start in serve()."""
        if scanner.CompiledScanner is None and self.process_index in (None, 1):
            log.warning(
                "the receiver uses the Python dataset scanner, with more CPU per instance: %s",
                f"{scanner.SCANNER_ENV}=python is set"
                if scanner.COMPILED_BUILT
                else "the compiled one is not built (scripts/install.sh needs a C compiler and "
                "the Python headers)",
            )
        incoming = self.data.stage(Stage.INCOMING)
        self.staging = Staging(incoming, self.instance)
        self.placer = Placer(self.data, self.staging, self.events, fsync=self.config.receiver.fsync)
        self.disk = DiskGuard(
            str(incoming), self.config.receiver.min_free_disk_mb << 20, on_full=self._disk_full
        )
        self.servers: dict[str, tuple[tuple[ListenerConfig, ReceiverConfig], DicomServer]] = {}
        self._apply_lock = asyncio.Lock()
        self._reconfigure: asyncio.Task[None] | None = None
        self._unopened: dict[str, str] = {}
        """Listeners (and the STOW-RS endpoint) that could not be opened after a configuration
        change, with their error: tried again every LISTEN_RETRY_SECONDS."""
        self._retry: asyncio.TimerHandle | None = None
        self.stow: StowServer | None = None
        self.inherited = inherited_sockets() if self.process_index is not None else {}
        """The listening sockets opened by the parent, when this is one of several processes."""

    async def serve(self) -> None:
        """Listen until the first stop signal, then let open associations finish."""
        await self._apply_listeners(initial=True)
        await self.stopping.wait()
        grace = self.config.supervisor.stop_timeout
        await asyncio.gather(
            *(server.shutdown(grace) for _, server in self.servers.values()),
            *([self.stow.shutdown()] if self.stow is not None else []),
        )
        self.servers.clear()
        self.stow = None

    def on_config(self, loaded: LoadedConfig) -> None:
        """Apply receiver changes: fsync and disk floor at once, listeners by restarting them."""
        receiver = loaded.config.receiver
        self.placer.fsync = receiver.fsync
        self.disk.floor_bytes = receiver.min_free_disk_mb << 20
        self._reconfigure = asyncio.get_running_loop().create_task(self._apply_listeners())

    def _disk_full(self) -> None:
        log.error("free disk space reached the floor: answering Out of Resources")
        self.events.emit(
            "receiver.disk_full",
            severity="critical",
            message="free disk space reached receiver.min_free_disk_mb",
        )

    async def _apply_listeners(self, *, initial: bool = False) -> None:
        async with self._apply_lock:
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            # The STOW-RS endpoint has its own restart (below): its changes leave DICOM alone.
            receiver = self.config.receiver.model_copy(update={"stow": None})
            wanted = {listener.name: listener for listener in receiver.listeners}
            for name, (settings, server) in list(self.servers.items()):
                if wanted.get(name) != settings[0] or settings[1] != receiver:
                    log.info("listener %s changed: restarting it", name)
                    await server.shutdown(self.config.supervisor.stop_timeout)
                    del self.servers[name]
            for name, listener in wanted.items():
                if name in self.servers:
                    continue
                if self.process_index is not None and address_key(listener) not in self.inherited:
                    # A moved listener: the parent opens its socket and replaces this process.
                    log.info("listener %s: waiting for the new address to be opened", name)
                    continue
                try:
                    self.servers[name] = (
                        (listener, receiver),
                        await self._start(listener, receiver),
                    )
                except ListenerError as exc:
                    if initial:
                        raise
                    self._cannot_open(name, exc)
                else:
                    self._opened(name)
            for name in set(self._unopened) - set(wanted) - {STOW}:
                del self._unopened[name]  # no longer configured: nothing to open
            try:
                await self._apply_stow()
            except ListenerError as exc:
                if initial:
                    raise
                self._cannot_open(STOW, exc)
            else:
                self._opened(STOW)
            if self._unopened and not self.stopping.is_set():
                self._retry = asyncio.get_running_loop().call_later(
                    LISTEN_RETRY_SECONDS, self._retry_listeners
                )

    def _cannot_open(self, name: str, exc: ListenerError) -> None:
        """Report a listener that cannot be opened (once per distinct error) and keep trying."""
        self._unopened[name] = report_cannot_open(exc, self._unopened.get(name), self.events)

    def _opened(self, name: str) -> None:
        if self._unopened.pop(name, None) is not None:
            what = "the STOW-RS endpoint" if name == STOW else f"listener {name!r}"
            log.info("%s is open now, on a later try", what)

    def _retry_listeners(self) -> None:
        self._retry = None
        if not self.stopping.is_set():
            self._reconfigure = asyncio.get_running_loop().create_task(self._apply_listeners())

    async def _apply_stow(self) -> None:
        """Start, stop or restart the STOW-RS endpoint; new senders and limits apply at once."""
        settings = self.config.receiver.stow
        if self.process_index not in (None, STOW_PROCESS):
            settings = None  # one process serves STOW-RS (docs/receiver.md)
        running = self.stow
        if running is not None:
            unchanged = settings is not None and running.settings.model_dump(
                exclude={"senders", "max_request_mb", "max_instance_mb", "read_timeout"}
            ) == settings.model_dump(
                exclude={"senders", "max_request_mb", "max_instance_mb", "read_timeout"}
            )
            if unchanged:
                assert settings is not None
                running.app.configure(settings)
                running.settings = settings
                return
            log.info("receiver.stow changed: restarting the STOW-RS endpoint")
            self.stow = None
            await running.shutdown()
        if settings is None:
            return
        app = StowApp(settings, self.placer, self.disk, self.events)
        server = StowServer(settings, app)
        await server.start()
        self.stow = server

    async def _start(self, listener: ListenerConfig, receiver: ReceiverConfig) -> DicomServer:
        handler = ReceiverHandler(listener, self.placer, self.events, self.disk)
        settings = listener_settings(
            listener, receiver, shared_sockets=self.inherited.get(address_key(listener), ())
        )
        server = DicomServer(settings, handler)
        try:
            await server.start()
        except OSError as exc:
            raise cannot_listen(listener, exc) from exc
        log.info("listener %s: %s on port %d", listener.name, listener.aet, server.port)
        return server

    async def teardown(self) -> None:
        """Stop the flush threads and remove this process's (empty) staging folder."""
        if hasattr(self, "placer"):
            self.placer.flusher.close()
        if hasattr(self, "staging"):
            self.staging.close()


SERVICE = ReceiverService
