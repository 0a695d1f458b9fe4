"""The edit pages of named objects of ``mercure.yaml``: targets, modules, channels (which
rules refer to) and retrieve sources (which commands and jobs name).

A :class:`NamedKind` says where the objects are (``targets``), what tells their model
(``type``: one model each), and which key of a rule names them (``targets``). It gives what the
Targets and Modules pages share: the form of one object (made by :mod:`mercure.webgui.forms`,
with the name as one more control), saving it through
:func:`mercure.webgui.configedit.save_edit` (a new name renames the object, and the rules that
name it follow), the delete confirmation and the delete (refused while a rule uses it), and
which rules use each object. The page modules declare the routes and the roles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mercure.core.config.editing import Document
from mercure.core.config.types import NAME_PATTERN
from mercure.webgui.auth import AdminSession, ViewerSession
from mercure.webgui.configedit import (
    EditRefused,
    Unreadable,
    open_config,
    refusal,
    save_edit,
    save_then_redirect,
    unreadable_page,
)
from mercure.webgui.flash import clear_flash, redirect_with, take_flash
from mercure.webgui.forms import (
    Control,
    FormData,
    FormErrors,
    build_form,
    form_error_issues,
    parse_form,
    place_issues,
    typed_secret,
)
from mercure.webgui.rendering import render, url
from mercure.webgui.roles import Role

NAME = re.compile(NAME_PATTERN)


def may(request: Request, role: Role) -> bool:
    """Whether the signed-in user has at least ``role``."""
    session = getattr(request.state, "session", None)
    return session is not None and session.role.allows(role)


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class NamedKind:
    """Named objects of one section of ``mercure.yaml`` and their pages."""

    section: str
    """The section and the list page's route name: ``targets``."""
    noun: str
    """One of them, the edit page's route name and its parameter: ``target``."""
    discriminator: str
    """The key that tells the model: ``type``, ``runner``."""
    models: Mapping[str, type[BaseModel]]
    help: Mapping[str, str]
    """A line about each model, for choosing one."""
    uses: tuple[str, ...]
    """The keys of a rule that name these objects (``targets`` and mercure's ``target``)."""
    reserved: tuple[str, ...]
    """Names that are the pages' own addresses (``new``): refused for a new name."""
    testable: bool = False
    """Whether the page has a *Test* (operators), posting the form to ``<noun>_test``."""
    name_help: str = ""
    """What uses the name, for objects no rule names (``uses`` empty): retrieve sources."""

    @property
    def name_field(self) -> str:
        """The control of the object's name: ``target_name`` (``name`` may be a field)."""
        return f"{self.noun}_name"

    def edit_url(self, request: Request, name: str) -> str:
        """The edit page of the object ``name``."""
        return url(request, self.noun, **{self.noun: name})

    def add_routes(self, router: APIRouter) -> None:
        """The routes of one object, on the page's ``router``, after its own routes
        (``/targets/test``: routes match in order): the form (every role; new: admins), save,
        the delete confirmation and delete (admins). Route names and the path parameter are
        the noun's: ``target_new``, ``target``, ``target_save``, ``target_delete_confirm``,
        ``target_delete``, ``/targets/{target}``."""
        noun, one = self.noun, f"/{self.section}/{{{self.noun}}}"

        async def new_form(request: Request, _session: AdminSession) -> Response:
            return self.new_page(request)

        async def form(request: Request, _session: ViewerSession) -> Response:
            return self.edit_page(request, request.path_params[noun])

        async def create(request: Request, _session: AdminSession) -> Response:
            return await self.save(request, "")

        async def save(request: Request, _session: AdminSession) -> Response:
            return await self.save(request, request.path_params[noun])

        async def confirm(request: Request, _session: AdminSession) -> Response:
            return self.confirm_delete(request, request.path_params[noun])

        async def delete(request: Request, _session: AdminSession) -> Response:
            return await self.delete(request, request.path_params[noun])

        for path, endpoint, method, name in (
            (f"/{self.section}/new", new_form, "GET", f"{noun}_new"),
            (one, form, "GET", noun),
            (f"/{self.section}/new", create, "POST", f"{noun}_create"),
            (one, save, "POST", f"{noun}_save"),
            (f"{one}/delete", confirm, "GET", f"{noun}_delete_confirm"),
            (f"{one}/delete", delete, "POST", f"{noun}_delete"),
        ):
            router.add_api_route(path, endpoint, methods=[method], name=name)

    # --- which rules use what -------------------------------------------------------------
    def rules_using(self, plain: Mapping[str, Any]) -> dict[str, list[str]]:
        """Which rules name each object, by object name."""
        using: dict[str, list[str]] = {}
        if not self.uses:
            return using
        rules = plain.get("rules") or {}
        for rule, body in rules.items() if isinstance(rules, dict) else ():
            if not isinstance(body, dict):
                continue
            key = next((k for k in self.uses if k in body), self.uses[0])
            for name in _names(body.get(key)):
                using.setdefault(name, []).append(str(rule))
        return using

    def rename_in_rules(self, document: Document, old: str, new: str) -> None:
        """Rename the object in every rule that names it, as the rule writes it."""
        for rule, body in (document.get(("rules",)) or {}).items():
            if not isinstance(body, dict):
                continue
            for key in self.uses:
                value = body.get(key)
                if isinstance(value, str) and value == old:
                    document.set(("rules", rule, key), new)
                elif isinstance(value, list) and old in value:
                    document.set(("rules", rule, key), [new if v == old else v for v in value])

    # --- the form of one object -----------------------------------------------------------
    def name_control(self, name: str, stored_name: str, error: str = "") -> Control:
        """The control of the object's name, which is its key in the section."""
        help_text = self.name_help or f"The name rules use in `{self.uses[0]}`."
        if stored_name and self.uses:
            help_text += " Renaming renames it in the rules too."
        return Control(
            kind="text",
            name=self.name_field,
            label="name",
            help=help_text,
            value=name,
            required=True,
            attrs={"maxlength": "64", "required": "required"},
            errors=[error] if error else [],
        )

    def form_page(
        self,
        request: Request,
        *,
        name: str,
        kind: str,
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
        """The form of one object: ``stored`` as the file has it, or ``value`` (a submitted
        form read back) shown again with its ``issues`` or the ``refused`` save's."""
        controls = [
            self.name_control(name, stored_name, name_error),
            *build_form(
                self.models[kind],
                stored if value is None else value,
                stored=stored,
                base_path=(self.section, stored_name or name),
            ),
        ]
        problems = [*(problems or []), *place_issues(controls, issues or [])]
        if refused is not None:
            unplaced = place_issues(controls, refused.issues, prefix=f"{self.section}.{name}")
            message, status_code = refusal(refused, unplaced)
            problems.append(message)
        may_save = may(request, Role.ADMIN)
        may_test = self.testable and may(request, Role.OPERATOR)
        context = {
            "kinds": self,
            "name": name,
            "kind": kind,
            "stored_name": stored_name,
            "controls": controls,
            "config_version": version,
            "using": using,
            "problems": problems,
            "may_save": may_save,
            "may_test": may_test,
            "may_change": may_save or may_test,
            "typed_secret": data is not None and typed_secret(controls, data),
            "flash": take_flash(request),
        }
        response = render(request, "object_edit.html", context, status_code=status_code)
        clear_flash(request, response)
        return response

    def new_page(self, request: Request) -> Response:
        """The form for a new object of the model chosen (``?type=``)."""
        first = next(iter(self.models))
        kind = request.query_params.get(self.discriminator, first)
        problems = []
        if kind not in self.models:
            problems.append(
                f"There is no {self.noun} {self.discriminator} {kind[:40]!r}; choose one of "
                "the list."
            )
            kind = first
        try:
            file, _document = open_config(request)
        except Unreadable as exc:
            return unreadable_page(request, exc)
        return self.form_page(
            request,
            name="",
            kind=kind,
            stored_name="",
            stored={self.discriminator: kind},
            version=file.version,
            using=[],
            problems=problems,
        )

    def edit_page(self, request: Request, name: str) -> Response:
        """The form of the object ``name``; 404 when there is none."""
        try:
            file, document = open_config(request)
        except Unreadable as exc:
            return unreadable_page(request, exc)
        stored = document.get((self.section, name))
        if not isinstance(stored, dict) or stored.get(self.discriminator) not in self.models:
            return render(
                request,
                "error.html",
                {
                    "title": f"No such {self.noun}",
                    "message": f"There is no {self.noun} {name[:64]!r}.",
                },
                status_code=404,
            )
        return self.form_page(
            request,
            name=name,
            kind=stored[self.discriminator],
            stored_name=name,
            stored=stored,
            version=file.version,
            using=self.rules_using(document.plain()).get(name, []),
        )

    # --- saving and deleting --------------------------------------------------------------
    async def save(self, request: Request, stored_name: str) -> Response:
        """Save the submitted form of the object ``stored_name`` (``""``: a new one)."""
        form = FormData(await request.form())
        kind = form.last(self.discriminator) or ""
        name = (form.last(self.name_field) or "").strip()
        version = form.last("config_version") or ""
        try:
            _file, document = open_config(request)
        except Unreadable as exc:
            return unreadable_page(request, exc)
        stored = document.get((self.section, stored_name)) if stored_name else None
        if stored_name and not isinstance(stored, dict):
            return redirect_with(
                request,
                url(request, self.section),
                f"There is no {self.noun} {stored_name!r} any more.",
                "bad",
            )
        stored = stored if isinstance(stored, dict) else {}
        if stored_name:
            kind = str(stored.get(self.discriminator))
        if kind not in self.models:
            kind = next(iter(self.models))
        stored = stored or {self.discriminator: kind}

        def again(message: str = "", **shown: Any) -> Response:
            return self.form_page(
                request,
                name=name,
                kind=kind,
                stored_name=stored_name,
                stored=stored,
                version=version,
                using=self.rules_using(document.plain()).get(stored_name, []),
                data=form,
                problems=[message] if message else [],
                status_code=400,
                **shown,
            )

        if name.lower() in self.reserved and name != stored_name:
            return again(
                f"{name!r} is an address of this page; choose another name.",
                name_error="reserved name",
            )
        if not NAME.match(name):
            return again(
                f"A {self.noun} name is 1 to 64 letters, digits, spaces, '_', '.' or '-', "
                "starting with a letter or digit.",
                name_error="not a valid name",
            )
        try:
            value = parse_form(
                self.models[kind], form, stored, base_path=(self.section, stored_name or name)
            )
        except FormErrors as exc:
            return again(
                "Some values cannot be read; see the fields marked.",
                value=exc.value,
                issues=form_error_issues(exc),
            )
        renamed = bool(stored_name) and name != stored_name

        def edit(doc: Document) -> None:
            if (not stored_name or renamed) and doc.has((self.section, name)):
                raise EditRefused(
                    f"There is a {self.noun} named {name!r} already; choose another name."
                )
            if stored_name and not doc.has((self.section, stored_name)):
                raise EditRefused(
                    f"The {self.noun} {stored_name!r} was removed meanwhile.", conflict=True
                )
            if renamed:
                doc.rename((self.section, stored_name), name)
                self.rename_in_rules(doc, stored_name, name)
            doc.set((self.section, name), value)

        what = (
            "added" if not stored_name else f"renamed from {stored_name}" if renamed else "changed"
        )
        try:
            await save_edit(
                request,
                edit,
                version=version,
                summary=f"{self.noun} {name} {what}",
                object=f"{self.noun} {name}",
            )
        except EditRefused as refused:
            return again(value=value, refused=refused)
        return redirect_with(
            request, self.edit_url(request, name), f"{self.noun.capitalize()} {name} saved."
        )

    def confirm_delete(self, request: Request, name: str) -> Response:
        """The confirmation step of deleting an object (which says so while rules use it)."""
        try:
            file, document = open_config(request)
        except Unreadable as exc:
            return unreadable_page(request, exc)
        exists = document.has((self.section, name))
        context = {
            "kinds": self,
            "name": name,
            "exists": exists,
            "using": self.rules_using(document.plain()).get(name, []),
            "config_version": file.version,
        }
        return render(request, "object_delete.html", context, status_code=200 if exists else 404)

    async def delete(self, request: Request, name: str) -> Response:
        """Delete an object, once confirmed, unless a rule uses it."""
        form = await request.form()
        back = self.edit_url(request, name)
        if form.get("confirm") != name:
            return redirect_with(request, back, "Deleting needs the confirmation step.", "bad")
        title = f"{self.noun.capitalize()} {name}"

        def edit(doc: Document) -> None:
            if not doc.has((self.section, name)):
                raise EditRefused(f"There is no {self.noun} {name!r} any more.")
            using = self.rules_using(doc.plain()).get(name, [])
            if using:
                raise EditRefused(
                    f"{title} is used by the rule{'s' if len(using) > 1 else ''} "
                    f"{', '.join(using)}: change {'them' if len(using) > 1 else 'it'} first."
                )
            doc.delete((self.section, name))

        return await save_then_redirect(
            request,
            edit,
            version=str(form.get("config_version", "")),
            summary=f"{self.noun} {name} deleted",
            object=f"{self.noun} {name}",
            saved=(url(request, self.section), f"{title} was deleted."),
            refused=(back, ""),
        )


__all__ = ["NAME", "NamedKind", "may"]
