"""``mercure webgui``: the web interface, served by uvicorn inside the service frame.

Start-up reads the session signing key (``webgui.session_secret``, else the key file
``data_dir/.secrets/webgui.key``, made at the first start), builds the application and serves
it on ``webgui.host:webgui.port``, with TLS when a certificate is configured. A configuration
reload applies the session timeouts, the trusted proxies and the body limit at once; address,
port, TLS and root_path need a restart. Sessions are kept in this process: a restart signs
everyone out.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from mercure.core.apikey import SECRETS_DIR, ApiKeys, ensure_secret_file, read_secret_file
from mercure.core.config import LoadedConfig
from mercure.core.config.models import MercureConfig
from mercure.core.errors import MercureError, PermanentError
from mercure.core.httpserver import FrameServer, listen_socket
from mercure.core.masking import register_secret
from mercure.core.service import Service
from mercure.webgui.app import asgi_app, create_app
from mercure.webgui.bookkeeper import BookkeeperClient
from mercure.webgui.context import WebContext
from mercure.webgui.sessions import CookieSigner, SessionStore
from mercure.webgui.settings import WebSettings

log = logging.getLogger(__name__)

SESSION_KEY_FILE = "webgui.key"


def session_key_path(data_dir: Path) -> Path:
    """Where the data folder keeps the key that signs the session cookies."""
    return Path(data_dir) / SECRETS_DIR / SESSION_KEY_FILE


def session_key(config: MercureConfig) -> str:
    """``webgui.session_secret``, else the key file (made now if missing)."""
    secret = config.webgui.session_secret
    if secret is not None and secret.get_secret_value():
        value = secret.get_secret_value()
        register_secret(value)
        return value
    path = session_key_path(config.data_dir)
    ensure_secret_file(path, "the web interface's session key")
    return read_secret_file(path, "the web interface's session key")


def build_context(
    loaded: LoadedConfig, service: Service, bookkeeper: BookkeeperClient | None = None
) -> WebContext:
    """The web context of a service on a loaded configuration."""
    config = loaded.config
    settings = WebSettings.from_config(config.webgui)
    keys = ApiKeys.from_config(config)
    return WebContext(
        config=config,
        settings=settings,
        data=service.data,
        bookkeeper=bookkeeper or BookkeeperClient(config.bookkeeper.effective_url(), keys.current),
        events=service.events,
        signer=CookieSigner(session_key(config)),
        sessions=SessionStore(idle_timeout=settings.idle_timeout, max_age=settings.max_age),
        config_path=loaded.path,
    )


def _check_tls(certificate: Path, key: Path) -> None:
    """Fail at start-up, naming the file, when the certificate or key cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise PermanentError(
            f"webgui cannot use tls_certificate {certificate} with tls_key {key}: {exc}"
        ) from None


class WebGuiService(Service):
    """The web interface."""

    name = "webgui"

    context: WebContext
    app: FastAPI

    async def setup(self) -> None:
        """Read the session key and build the application."""
        self.context = build_context(self.loaded, self)
        self.app = create_app(self.context)
        settings = self.config.webgui
        if settings.tls_certificate and settings.tls_key:
            _check_tls(settings.tls_certificate, settings.tls_key)

    async def serve(self) -> None:
        """Serve HTTP(S) until the frame says stop."""
        settings = self.config.webgui
        sock = listen_socket(settings.host, settings.port, "webgui")
        tls = settings.tls_certificate is not None
        config = uvicorn.Config(
            asgi_app(self.app, self.context),
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,  # asgi.ProxyHeaders decides, from webgui.trusted_proxies only
            server_header=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,
            limit_concurrency=200,
            h11_max_incomplete_event_size=64 << 10,  # request line and headers
            ssl_certfile=str(settings.tls_certificate) if tls else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        )
        server = FrameServer(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        stop = asyncio.create_task(self.stopping.wait())
        scheme = "https" if tls else "http"
        root = settings.root_path or ""
        log.info("webgui listening on %s://%s:%d%s/", scheme, settings.host, settings.port, root)
        try:
            await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            await serving
        finally:
            stop.cancel()
            sock.close()
        if not self.stopping.is_set():
            raise MercureError("webgui HTTP server stopped unexpectedly")

    async def teardown(self) -> None:
        """Close the bookkeeper client."""
        context = getattr(self, "context", None)
        if context is not None:
            await context.bookkeeper.aclose()

    def on_config(self, loaded: LoadedConfig) -> None:
        """Follow timeouts, proxies and the body limit; the rest needs a restart."""
        if not hasattr(self, "context"):
            return
        self.context.apply(loaded.config)
        self.context.config_path = loaded.path
        self.context.bookkeeper.api_key = ApiKeys.from_config(loaded.config).current


SERVICE = WebGuiService
