"""The services by name, and which of them this build has.

Each service is a package with a ``service.py`` (``mercure/<name>/service.py``); a build without
one of them (a trimmed installation) does not offer it. The configuration refuses a service
that is not installed, so ``supervisor.services`` never names one that would silently not run.
"""

from __future__ import annotations

import importlib.util

SERVICE_NAMES = (
    "bookkeeper",
    "receiver",
    "router",
    "retriever",
    "processor",
    "dispatcher",
    "notifier",
    "cleaner",
    "webgui",
)
"""Every service of the design, in start-up order: the bookkeeper first, so the others find it."""


def is_installed(name: str) -> bool:
    """Whether the service's package exists in this build."""
    if importlib.util.find_spec(f"mercure.{name}") is None:
        return False
    return importlib.util.find_spec(f"mercure.{name}.service") is not None


def installed_services() -> list[str]:
    """Names of the services this build can run, in start-up order."""
    return [name for name in SERVICE_NAMES if is_installed(name)]
