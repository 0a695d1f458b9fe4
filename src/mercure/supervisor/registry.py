"""The seven services by name, and which of them are installed in this build."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mercure.core.service import Service

SERVICE_NAMES = (
    "bookkeeper",
    "receiver",
    "router",
    "processor",
    "dispatcher",
    "cleaner",
    "webgui",
)
"""In start-up order: the bookkeeper first, so the others find it."""


def is_installed(name: str) -> bool:
    """Whether the service's package exists (each issue adds one)."""
    if importlib.util.find_spec(f"mercure.{name}") is None:
        return False
    return importlib.util.find_spec(f"mercure.{name}.service") is not None


def installed_services() -> list[str]:
    """Names of the services this build can run, in start-up order."""
    return [name for name in SERVICE_NAMES if is_installed(name)]


def service_class(name: str) -> type[Service]:
    """The Service subclass of a service: ``mercure.<name>.service.SERVICE``."""
    module = importlib.import_module(f"mercure.{name}.service")
    cls: type[Service] = module.SERVICE
    return cls
