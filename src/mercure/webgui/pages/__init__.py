"""The pages of the web interface: one module per page, each with an ``APIRouter``.

To add a page: write ``pages/<page>.py`` with ``router = APIRouter()``, declare on every route
who may use it (``requires(Role.X)``; :mod:`mercure.webgui.auth`), name its main route after
its menu entry (:data:`mercure.webgui.rendering.NAV`), render templates that extend
``base.html`` with :func:`mercure.webgui.rendering.render`, and add the router to
:data:`ROUTERS`.
"""

from __future__ import annotations

from fastapi import APIRouter

from mercure.webgui.pages import (
    account,
    audit,
    auth,
    config,
    logs,
    modules,
    notifications,
    overview,
    queue,
    rules,
    search,
    settings,
    sources,
    targets,
    upload,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    account.router,
    overview.router,
    queue.router,
    search.router,
    logs.router,
    rules.router,
    targets.router,
    modules.router,
    notifications.router,
    sources.router,
    settings.router,
    config.router,
    upload.router,
    audit.router,
    users.router,
)
