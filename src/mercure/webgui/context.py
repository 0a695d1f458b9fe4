"""What every request of the web interface needs, in one object on ``app.state.web``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fastapi import Request

from mercure.core.clock import utcnow
from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import DataFolder
from mercure.core.events import EventClient
from mercure.webgui.bookkeeper import BookkeeperClient
from mercure.webgui.overview import StageCounter
from mercure.webgui.sessions import CookieSigner, SessionStore
from mercure.webgui.settings import WebSettings
from mercure.webgui.throttle import LoginThrottle


@dataclass
class WebContext:
    """The web interface's state: settings, sessions, clients. Built by the service (or a test).

    ``config`` is the configuration in force (replaced on reload); ``config_path`` the file it
    came from (named in the instructions for creating the first user).
    """

    config: MercureConfig
    settings: WebSettings
    data: DataFolder
    bookkeeper: BookkeeperClient
    events: EventClient
    signer: CookieSigner
    sessions: SessionStore
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    config_path: Path | None = None
    clock: Callable[[], float] = time.monotonic
    """Monotonic time, for timeouts (injectable in tests)."""
    wall_clock: Callable[[], datetime] = utcnow
    """Calendar time (UTC), for what is shown."""
    users_exist_until: float = 0.0
    """Until then (clock time) the sign-in page knows that users exist without asking."""
    stage_counter: StageCounter = field(default_factory=StageCounter)
    """Queue depths for the overview, shared by every request (lists a folder only when it
    changed)."""

    def apply(self, config: MercureConfig) -> None:
        """Follow a reloaded configuration."""
        self.config = config
        self.settings.apply(config.webgui)
        self.sessions.idle_timeout = self.settings.idle_timeout
        self.sessions.max_age = self.settings.max_age


def web_context(request: Request) -> WebContext:
    """The :class:`WebContext` of the application serving ``request``."""
    context: WebContext = request.app.state.web
    return context


def client_address(request: Request) -> str:
    """The client's address (as a trusted proxy reports it, see asgi.ProxyHeaders)."""
    return request.client.host if request.client else "unknown"
