"""``mercure bookkeeper``: the HTTP API served by uvicorn inside the service frame.

Start-up migrates the database to the newest schema (so an upgrade of mercure-router upgrades
the database with it), then serves until the frame's stop signal. Retention runs in the
background: shortly after start and then every hour, in small batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app, set_api_key
from mercure.bookkeeper.database import (
    create_database_engine,
    database_url,
    describe,
    migrate,
    optimize,
)
from mercure.bookkeeper.guard import Access
from mercure.bookkeeper.retention import prune
from mercure.core.apikey import ApiKeys
from mercure.core.clock import utcnow
from mercure.core.config import LoadedConfig
from mercure.core.errors import MercureError
from mercure.core.httpserver import FrameServer, listen_socket
from mercure.core.service import Service

log = logging.getLogger(__name__)

RETENTION_INTERVAL = 3600.0
RETENTION_FIRST_RUN = 60.0
"""The first pruning waits a little, so that a restart catches up with the outboxes first."""


class BookkeeperService(Service):
    """The monitoring database and its API."""

    name = "bookkeeper"

    engine: Engine
    app: FastAPI

    async def setup(self) -> None:
        """Open and migrate the database, build the application."""
        settings = self.config.bookkeeper
        url = database_url(settings.database_url, self.data.root)
        self.engine = create_database_engine(url)
        try:
            await asyncio.to_thread(migrate, self.engine)
        except Exception as exc:
            self.engine.dispose()
            raise MercureError(
                f"bookkeeper cannot prepare its database {describe(self.engine)}: {exc}"
            ) from exc
        log.info("bookkeeper database: %s", describe(self.engine))
        keys = ApiKeys.from_config(self.config)
        keys.current()  # makes the key file now if needed, and fails here if it cannot
        log.info("bookkeeper API key from %s", keys.source)
        self.app = create_app(
            self.engine,
            api_key=keys.accepted,
            max_body=settings.max_request_mb << 20,
            metrics_open=settings.metrics_open,
            queue_depths=lambda: {
                stage.value: depth for stage, depth in self.data.queue_depths().items()
            },
            data_folder=self.data.root,
        )

    async def serve(self) -> None:
        """Serve HTTP until the frame says stop."""
        settings = self.config.bookkeeper
        sock = listen_socket(settings.host, settings.port, "bookkeeper")
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
        server = FrameServer(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        retention = asyncio.create_task(self._retention_loop())
        stop = asyncio.create_task(self.stopping.wait())
        log.info("bookkeeper listening on http://%s:%d", settings.host, settings.port)
        try:
            await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            await serving
        finally:
            retention.cancel()
            stop.cancel()
            sock.close()
        if not self.stopping.is_set():
            raise MercureError("bookkeeper HTTP server stopped unexpectedly")

    async def teardown(self) -> None:
        """Close the database connections."""
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.dispose()

    def on_config(self, loaded: LoadedConfig) -> None:
        """Follow changed keys and limits; a changed address or database needs a restart."""
        if not hasattr(self, "app"):
            return
        settings = loaded.config.bookkeeper
        set_api_key(self.app, ApiKeys.from_config(loaded.config).accepted)
        access: Access = self.app.state.access
        access.max_body = settings.max_request_mb << 20
        access.metrics_open = settings.metrics_open

    async def _retention_loop(self) -> None:
        delay = RETENTION_FIRST_RUN
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
                return
            delay = RETENTION_INTERVAL
            cutoff = utcnow() - timedelta(seconds=self.config.bookkeeper.retention)
            try:
                await asyncio.to_thread(prune, self.engine, cutoff)
                await asyncio.to_thread(optimize, self.engine)
            except MercureError as exc:
                log.error("retention failed, trying again in an hour: %s", exc)


SERVICE = BookkeeperService
