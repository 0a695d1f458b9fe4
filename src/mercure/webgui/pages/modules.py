"""The Modules page: processing modules of both runners; add, edit and delete.

- ``GET /modules`` (every role): runner, image or command, timeout, limits, the rules that use
  each module, and for ``docker`` modules whether the image is on the container engine
  (present / missing / engine unreachable; :mod:`mercure.webgui.engine`, bounded in time).
- ``GET /modules/new?runner=docker`` and ``GET /modules/{module}``: the form, every field of
  ``DockerModule`` / ``CommandModule`` (:mod:`mercure.webgui.forms`): ``settings`` and
  ``settings_schema`` as JSON, checked on save, the settings against the schema;
  ``environment`` values are write-only like passwords unless they are ``${VAR}`` references.
- ``POST`` (admin): saved through :func:`mercure.webgui.configedit.save_edit`; renaming renames
  the module in the rules' ``processing_module``; deleting is refused while a rule uses it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mercure.core.config.models import CommandModule, DockerModule
from mercure.webgui.auth import ViewerSession
from mercure.webgui.configedit import Unreadable, open_config
from mercure.webgui.context import web_context
from mercure.webgui.engine import image_states
from mercure.webgui.flash import clear_flash, take_flash
from mercure.webgui.namedobjects import NamedKind, may
from mercure.webgui.rendering import render
from mercure.webgui.roles import Role

router = APIRouter()

RUNNERS: dict[str, type[BaseModel]] = {"docker": DockerModule, "command": CommandModule}
RUNNER_HELP = {
    "docker": "a container image, run through the Docker Engine API",
    "command": "a program on this host",
}
MODULES = NamedKind(
    section="modules",
    noun="module",
    discriminator="runner",
    models=RUNNERS,
    help=RUNNER_HELP,
    uses=("processing_module",),
    reserved=("new",),  # the page's own address, /modules/new
)


def limits(module: Any) -> str:
    """The limits of a module in one line (memory, CPUs, network, GPU, root)."""
    parts = []
    if isinstance(module, DockerModule):
        if module.memory_limit_mb:
            parts.append(f"{module.memory_limit_mb} MB")
        if module.cpu_limit:
            parts.append(f"{module.cpu_limit:g} CPU")
        parts.append("network" if module.network else "no network")
        if module.gpu:
            parts.append("GPU")
        if module.requires_root:
            parts.append("root")
    return ", ".join(parts)


@router.get("/modules", name="modules")
async def modules_page(request: Request, _session: ViewerSession) -> Response:
    """Every module, what it runs, its limits, the rules that use it, its image's presence."""
    web = web_context(request)
    problem = ""
    try:
        _file, document = open_config(request)
        using = MODULES.rules_using(document.plain())
    except Unreadable as exc:
        problem, using = str(exc), {}
    modules = sorted(web.config.modules.items())
    images = [m.image for _, m in modules if isinstance(m, DockerModule)]
    states = await image_states(web.config.processing.docker_url, images)
    rows = [
        {
            "name": name,
            "runner": module.runner,
            "runs": module.image if isinstance(module, DockerModule) else " ".join(module.command),
            "timeout": module.timeout,
            "limits": limits(module),
            "image_state": states.get(module.image) if isinstance(module, DockerModule) else None,
            "comment": module.comment,
            "schema": module.settings_schema is not None,
        }
        for name, module in modules
    ]
    context = {
        "modules": rows,
        "using": using,
        "problem": problem,
        "may_edit": may(request, Role.ADMIN),
        "engine": web.config.processing.docker_url or "DOCKER_HOST",
        "flash": take_flash(request),
    }
    response = render(request, "modules.html", context)
    clear_flash(request, response)
    return response


MODULES.add_routes(router)
