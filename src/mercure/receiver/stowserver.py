"""The STOW-RS endpoint's HTTP server: uvicorn on the receiver's own event loop.

uvicorn rather than a hand-written HTTP layer: it is already the project's HTTP server (the
bookkeeper and the web interface), it runs on the loop it is given (here the receiver's uvloop,
beside the DICOM listeners, sharing the placer, its flush threads and the disk guard), it sends
``100 Continue`` only when the application reads the body, and it bounds the request head
(h11) and the number of connections.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import uvicorn

from mercure.core.config.models import StowConfig
from mercure.core.errors import PermanentError
from mercure.core.httpserver import FrameServer, listen_socket
from mercure.receiver.listeners import ListenerError
from mercure.receiver.stow import StowApp

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 64 << 10
"""Largest request line plus headers (bytes)."""


def _uvicorn_config(settings: StowConfig, app: StowApp) -> uvicorn.Config:
    tls = settings.tls
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        http="h11",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
        ssl_certfile=str(tls.certificate) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        ssl_ca_certs=str(tls.ca_certificate) if tls and tls.ca_certificate else None,
        ssl_cert_reqs=(
            ssl.CERT_REQUIRED
            if tls and tls.require_client_certificate
            else ssl.CERT_OPTIONAL
            if tls and tls.ca_certificate
            else ssl.CERT_NONE
        ),
    )
    try:
        config.load()
    except (OSError, ssl.SSLError) as exc:
        raise ListenerError(
            f"receiver.stow: cannot load its TLS certificate or key: {exc}"
        ) from exc
    return config


class StowServer:
    """Serves one :class:`StowApp` on ``receiver.stow.host:port`` until shut down."""

    def __init__(self, settings: StowConfig, app: StowApp) -> None:
        self.settings = settings
        self.app = app
        self._server: FrameServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = settings.port

    async def start(self) -> None:
        """Listen; ListenerError when the port or the certificate cannot be used."""
        settings = self.settings
        config = _uvicorn_config(settings, self.app)
        try:
            self._sock = listen_socket(settings.host, settings.port, "receiver.stow")
        except PermanentError as exc:
            raise ListenerError(str(exc)) from None
        self.port = self._sock.getsockname()[1]
        self._server = FrameServer(config)
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._sock])
        )
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._sock.close()
            raise ListenerError(f"receiver.stow could not start: {self._task.exception()}")
        scheme = "https" if settings.tls else "http"
        log.info("STOW-RS listening on %s://%s:%d/studies", scheme, settings.host, self.port)

    async def shutdown(self) -> None:
        """Stop accepting, let running requests finish (bounded), close."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._sock.close()
            self._server = None
