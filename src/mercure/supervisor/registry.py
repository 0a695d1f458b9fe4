"""The services by name, which of them are installed, and the class that runs each one."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mercure.core.installed import SERVICE_NAMES, installed_services, is_installed

if TYPE_CHECKING:
    from mercure.core.service import Service

__all__ = ["SERVICE_NAMES", "installed_services", "is_installed", "service_class"]


def service_class(name: str) -> type[Service]:
    """The Service subclass of a service: ``mercure.<name>.service.SERVICE``."""
    module = importlib.import_module(f"mercure.{name}.service")
    cls: type[Service] = module.SERVICE
    return cls
