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

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mercure.core.config.editing import Document
from mercure.core.config.models import CommandModule, DockerModule
from mercure.core.config.types import NAME_PATTERN
from mercure.webgui.auth import AdminSession, ViewerSession
from mercure.webgui.configedit import EditRefused, save_edit
from mercure.webgui.context import web_context
from mercure.webgui.engine import image_states
from mercure.webgui.flash import clear_flash, redirect_with, take_flash
from mercure.webgui.forms import (
    FormData,
    FormErrors,
    build_form,
    form_error_issues,
    parse_form,
    place_issues,
    typed_secret,
)
from mercure.webgui.pages.targets import (
    Unreadable,
    may,
    name_control,
    open_config,
    refusal,
    rules_using,
    unreadable_page,
)
from mercure.webgui.rendering import render, url
from mercure.webgui.roles import Role

router = APIRouter()

RUNNERS: dict[str, type[BaseModel]] = {"docker": DockerModule, "command": CommandModule}
RUNNER_HELP = {
    "docker": "a container image, run through the Docker Engine API",
    "command": "a program on this host",
}
NAME = re.compile(NAME_PATTERN)
RESERVED = ("new",)
"""Names that are this page's own addresses (``/modules/new``): refused for a new name."""
USES = "processing_module"


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
        using = rules_using(document.plain(), USES)
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


def _form_page(
    request: Request,
    *,
    name: str,
    runner: str,
    stored_name: str,
    stored: dict[str, Any],
    version: str,
    using: list[str],
    value: dict[str, Any] | None = None,
    data: FormData | None = None,
    issues: list[tuple[str, str]] | None = None,
    refused: EditRefused | None = None,
    name_error: str = "",
    problems: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    found = [
        name_control("module_name", name, uses=USES, stored_name=stored_name, error=name_error),
        *build_form(
            RUNNERS[runner],
            stored if value is None else value,
            stored=stored,
            base_path=("modules", stored_name or name),
        ),
    ]
    problems = [*(problems or []), *place_issues(found, issues or [])]
    if refused is not None:
        unplaced = place_issues(found, refused.issues, prefix=f"modules.{name}")
        message, status_code = refusal(refused, unplaced)
        problems.append(message)
    context = {
        "name": name,
        "runner": runner,
        "runners": RUNNERS,
        "runner_help": RUNNER_HELP,
        "stored_name": stored_name,
        "controls": found,
        "config_version": version,
        "using": using,
        "problems": problems,
        "may_save": may(request, Role.ADMIN),
        "typed_secret": data is not None and typed_secret(found, data),
        "flash": take_flash(request),
    }
    response = render(request, "module_edit.html", context, status_code=status_code)
    clear_flash(request, response)
    return response


@router.get("/modules/new", name="module_new")
async def new_module(request: Request, _session: AdminSession) -> Response:
    """The form for a new module of the runner chosen (``?runner=``)."""
    runner = request.query_params.get("runner", "docker")
    problems = []
    if runner not in RUNNERS:
        problems.append(f"There is no runner {runner[:40]!r}; choose one of the list.")
        runner = "docker"
    try:
        file, _document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    return _form_page(
        request,
        name="",
        runner=runner,
        stored_name="",
        stored={"runner": runner},
        version=file.version,
        using=[],
        problems=problems,
    )


@router.get("/modules/{module}", name="module")
async def module_page(request: Request, _session: ViewerSession, module: str) -> Response:
    """One module's form (read-only for viewers and operators)."""
    try:
        file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    stored = document.get(("modules", module))
    if not isinstance(stored, dict) or stored.get("runner") not in RUNNERS:
        return render(
            request,
            "error.html",
            {"title": "No such module", "message": f"There is no module {module[:64]!r}."},
            status_code=404,
        )
    return _form_page(
        request,
        name=module,
        runner=stored["runner"],
        stored_name=module,
        stored=stored,
        version=file.version,
        using=rules_using(document.plain(), USES).get(module, []),
    )


def _rename_in_rules(document: Document, old: str, new: str) -> None:
    for rule, body in (document.get(("rules",)) or {}).items():
        value = body.get(USES) if isinstance(body, dict) else None
        if isinstance(value, str) and value == old:
            document.set(("rules", rule, USES), new)
        elif isinstance(value, list) and old in value:
            document.set(("rules", rule, USES), [new if v == old else v for v in value])


async def _save(request: Request, stored_name: str) -> Response:
    form = FormData(await request.form())
    runner = form.last("runner") or ""
    name = (form.last("module_name") or "").strip()
    version = form.last("config_version") or ""
    try:
        _file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    stored = document.get(("modules", stored_name)) if stored_name else None
    if stored_name and not isinstance(stored, dict):
        return redirect_with(
            request, url(request, "modules"), f"There is no module {stored_name!r} any more.", "bad"
        )
    stored = stored if isinstance(stored, dict) else {}
    if stored_name:
        runner = str(stored.get("runner"))
    if runner not in RUNNERS:
        runner = "docker"
    stored = stored or {"runner": runner}

    def again(message: str = "", **shown: Any) -> Response:
        return _form_page(
            request,
            name=name,
            runner=runner,
            stored_name=stored_name,
            stored=stored,
            version=version,
            using=rules_using(document.plain(), USES).get(stored_name, []),
            data=form,
            problems=[message] if message else [],
            status_code=400,
            **shown,
        )

    if name.lower() in RESERVED and name != stored_name:
        return again(
            f"{name!r} is an address of this page; choose another name.",
            name_error="reserved name",
        )
    if not NAME.match(name):
        return again(
            "A module name is 1 to 64 letters, digits, spaces, '_', '.' or '-', starting with a "
            "letter or digit.",
            name_error="not a valid name",
        )
    try:
        value = parse_form(
            RUNNERS[runner], form, stored, base_path=("modules", stored_name or name)
        )
    except FormErrors as exc:
        return again(
            "Some values cannot be read; see the fields marked.",
            value=exc.value,
            issues=form_error_issues(exc),
        )
    renamed = bool(stored_name) and name != stored_name

    def edit(doc: Document) -> None:
        if (not stored_name or renamed) and doc.has(("modules", name)):
            raise EditRefused(f"There is a module named {name!r} already; choose another name.")
        if stored_name and not doc.has(("modules", stored_name)):
            raise EditRefused(f"The module {stored_name!r} was removed meanwhile.", conflict=True)
        if renamed:
            doc.rename(("modules", stored_name), name)
            _rename_in_rules(doc, stored_name, name)
        doc.set(("modules", name), value)

    what = "added" if not stored_name else f"renamed from {stored_name}" if renamed else "changed"
    try:
        await save_edit(
            request, edit, version=version, summary=f"module {name} {what}", object=f"module {name}"
        )
    except EditRefused as refused:
        return again(value=value, refused=refused)
    return redirect_with(request, url(request, "module", module=name), f"Module {name} saved.")


@router.post("/modules/new", name="module_create")
async def create_module(request: Request, _session: AdminSession) -> Response:
    """Add a module."""
    return await _save(request, "")


@router.post("/modules/{module}", name="module_save")
async def save_module(request: Request, _session: AdminSession, module: str) -> Response:
    """Save a module's form (a new name renames it, in the rules too)."""
    return await _save(request, module)


@router.get("/modules/{module}/delete", name="module_delete_confirm")
async def confirm_delete(request: Request, _session: AdminSession, module: str) -> Response:
    """The confirmation step of deleting a module (refused while rules use it)."""
    try:
        file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    exists = document.has(("modules", module))
    context = {
        "name": module,
        "exists": exists,
        "using": rules_using(document.plain(), USES).get(module, []),
        "config_version": file.version,
    }
    return render(request, "module_delete.html", context, status_code=200 if exists else 404)


@router.post("/modules/{module}/delete", name="module_delete")
async def delete_module(request: Request, _session: AdminSession, module: str) -> Response:
    """Delete a module, once confirmed, unless a rule uses it."""
    form = await request.form()
    back = url(request, "module", module=module)
    if form.get("confirm") != module:
        return redirect_with(request, back, "Deleting needs the confirmation step.", "bad")

    def edit(doc: Document) -> None:
        if not doc.has(("modules", module)):
            raise EditRefused(f"There is no module {module!r} any more.")
        using = rules_using(doc.plain(), USES).get(module, [])
        if using:
            raise EditRefused(
                f"Module {module} is used by the rule{'s' if len(using) > 1 else ''} "
                f"{', '.join(using)}: change {'them' if len(using) > 1 else 'it'} first."
            )
        doc.delete(("modules", module))

    try:
        await save_edit(
            request,
            edit,
            version=str(form.get("config_version", "")),
            summary=f"module {module} deleted",
            object=f"module {module}",
        )
    except EditRefused as refused:
        return redirect_with(request, back, refused.message, "bad")
    return redirect_with(request, url(request, "modules"), f"Module {module} was deleted.")
