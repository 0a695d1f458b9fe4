"""The Targets page: every target with its delivery statistics; add, edit, test and delete.

- ``GET /targets`` (every role): type, where it delivers, and per target from the bookkeeper
  over a period (1 h, 24 h, 7 d): delivered, retried, failed, mean time, last error; "unknown"
  while the bookkeeper does not answer. Which rules use each target.
- ``GET /targets/new?type=dicom`` and ``GET /targets/{name}``: the form of one target, one per
  type, every field of its model (:mod:`mercure.webgui.forms`). Viewers see it read-only;
  operators may change the values to *Test* them but not save; admins save.
- ``POST /targets/test`` (operator): tests the form's current values, saved or not, with
  ``mercure test-target --json --definition -`` as a subprocess
  (:mod:`mercure.webgui.targettest`): secrets left empty are the stored ones, ``${VAR}`` comes
  from this process's environment. Answers the steps (an htmx fragment, or a page).
- ``POST /targets/new``, ``POST /targets/{name}``, ``POST /targets/{name}/delete`` (admin):
  saved through :func:`mercure.webgui.configedit.save_edit` (version check, validation, history,
  audit). Renaming a target renames it in the rules that use it; deleting is refused while a
  rule uses it, naming the rules.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from mercure.core.config.editing import KEEP, ConfigFile, Document
from mercure.core.config.loader import expand_env, format_path
from mercure.core.config.models import (
    DicomTarget,
    DicomWebTarget,
    FolderTarget,
    S3Target,
    SftpTarget,
    Target,
)
from mercure.core.config.types import NAME_PATTERN
from mercure.core.errors import ConfigError
from mercure.core.targettest import TargetTestReport
from mercure.webgui.audit import audit
from mercure.webgui.auth import AdminSession, OperatorSession, ViewerSession
from mercure.webgui.bookkeeper import BookkeeperError, TargetStatistics
from mercure.webgui.configedit import EditRefused, current_config, save_edit
from mercure.webgui.context import web_context
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
from mercure.webgui.sessions import Session
from mercure.webgui.targettest import run_target_test

router = APIRouter()

TYPES: dict[str, type[BaseModel]] = {
    "dicom": DicomTarget,
    "dicomweb": DicomWebTarget,
    "sftp": SftpTarget,
    "s3": S3Target,
    "folder": FolderTarget,
}
TYPE_HELP = {
    "dicom": "a DICOM node (C-STORE), optionally over TLS",
    "dicomweb": "a DICOMweb server (STOW-RS)",
    "sftp": "an SFTP server, a folder per task",
    "s3": "an S3 bucket or S3-compatible store",
    "folder": "a local or mounted folder, a folder per task",
}
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
NAME = re.compile(NAME_PATTERN)
RESERVED = ("new", "test")
"""Names that are this page's own addresses (``/targets/new``): refused for a new name."""
_target_adapter: TypeAdapter[Any] = TypeAdapter(Target)


def where(target: Any) -> str:
    """Where a target delivers, in one line (host:port and AE title, URL, bucket, folder)."""
    if isinstance(target, DicomTarget):
        tls = " (TLS)" if target.tls else ""
        host = "the sender's address" if target.use_sender_address else target.host
        return f"{target.aet_target}@{host}:{target.port}{tls}"
    if isinstance(target, DicomWebTarget):
        return target.url
    if isinstance(target, SftpTarget):
        return f"{target.user}@{target.host}:{target.port}:{target.folder}"
    if isinstance(target, S3Target):
        endpoint = f" at {target.endpoint_url}" if target.endpoint_url else ""
        return f"s3://{target.bucket}/{target.prefix}{endpoint}"
    if isinstance(target, FolderTarget):
        return str(target.folder)
    return ""


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value] if isinstance(value, list) else []


def rules_using(plain: dict[str, Any], key: str = "targets") -> dict[str, list[str]]:
    """Which rules name each target (``key="processing_module"``: each module), by name."""
    using: dict[str, list[str]] = {}
    rules = plain.get("rules") or {}
    for rule, body in rules.items() if isinstance(rules, dict) else ():
        if not isinstance(body, dict):
            continue
        names = _names(body.get(key, body.get("target") if key == "targets" else None))
        for name in names:
            using.setdefault(name, []).append(str(rule))
    return using


class Unreadable(Exception):
    """mercure.yaml cannot be read as a document now (a hand edit broke its syntax)."""


def open_config(request: Request) -> tuple[ConfigFile, Document]:
    """The configuration file and its document; :class:`Unreadable` saying why not."""
    try:
        return current_config(request)
    except ConfigError as exc:
        raise Unreadable(f"mercure.yaml cannot be read: {exc}") from None
    except EditRefused as exc:
        raise Unreadable(exc.message) from None


def unreadable_page(request: Request, exc: Unreadable) -> Response:
    """The page shown instead of a form while the file cannot be read."""
    message = f"{exc} Fix the file on the server (mercure check-config), then reload this page."
    context = {"title": "The configuration cannot be read", "message": message}
    return render(request, "error.html", context, status_code=503)


def may(request: Request, role: Role) -> bool:
    """Whether the signed-in user has at least ``role``."""
    session = getattr(request.state, "session", None)
    return session is not None and session.role.allows(role)


# --- the list ---------------------------------------------------------------------------------
@router.get("/targets", name="targets")
async def targets_page(request: Request, _session: ViewerSession) -> Response:
    """Every target, where it delivers, its statistics over a period, the rules that use it."""
    web = web_context(request)
    period = request.query_params.get("period", "24h")
    if period not in PERIODS:
        period = "24h"
    stats: dict[str, TargetStatistics] | None = None
    truncated = False
    try:
        page = await web.bookkeeper.target_statistics(web.wall_clock() - PERIODS[period])
        stats = {item.target: item for item in page.targets}
        truncated = page.truncated
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
    problem = ""
    try:
        _file, document = open_config(request)
        using = rules_using(document.plain())
    except Unreadable as exc:
        problem, using = str(exc), {}
    targets = [
        {"name": name, "type": target.type, "where": where(target), "comment": target.comment}
        for name, target in sorted(web.config.targets.items())
    ]
    context = {
        "targets": targets,
        "stats": stats,
        "truncated": truncated,
        "using": using,
        "period": period,
        "periods": list(PERIODS),
        "may_edit": may(request, Role.ADMIN),
        "problem": problem,
        "flash": take_flash(request),
    }
    response = render(request, "targets.html", context)
    clear_flash(request, response)
    return response


# --- one target: the form -------------------------------------------------------------------
def name_control(
    control_name: str, name: str, *, uses: str, stored_name: str, error: str = ""
) -> Control:
    """The control ``control_name`` (``target_name``, ``module_name``) of an object's name,
    which is its key; ``uses``: the rules' key that names such objects."""
    help_text = f"The name rules use in `{uses}`."
    if stored_name:
        help_text += " Renaming renames it in the rules too."
    control = Control(
        kind="text",
        name=control_name,
        label="name",
        help=help_text,
        value=name,
        required=True,
        attrs={"maxlength": "64", "required": "required"},
    )
    if error:
        control.errors.append(error)
    return control


def refusal(refused: EditRefused, unplaced: list[str]) -> tuple[str, int]:
    """What a form page says about a refused save, and its status (``unplaced``: the issues
    that belong to no control)."""
    if refused.conflict:
        return refused.message + " Open the page again to see the file as it is now.", 409
    if refused.issues and not unplaced:
        count = len(refused.issues)
        return f"Not saved: {count} problem{'s' if count > 1 else ''}, shown at the fields.", 400
    if refused.issues:
        return "Not saved: " + "; ".join(unplaced), 400
    return refused.message, 400


def _form_page(
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
    found = [
        name_control(
            "target_name", name, uses="targets", stored_name=stored_name, error=name_error
        ),
        *build_form(
            TYPES[kind],
            stored if value is None else value,
            stored=stored,
            base_path=("targets", stored_name or name),
        ),
    ]
    problems = [*(problems or []), *place_issues(found, issues or [])]
    if refused is not None:
        unplaced = place_issues(found, refused.issues, prefix=f"targets.{name}")
        message, status_code = refusal(refused, unplaced)
        problems.append(message)
    context = {
        "name": name,
        "kind": kind,
        "kinds": TYPES,
        "type_help": TYPE_HELP,
        "stored_name": stored_name,
        "controls": found,
        "config_version": version,
        "using": using,
        "problems": problems,
        "may_save": may(request, Role.ADMIN),
        "may_test": may(request, Role.OPERATOR),
        "typed_secret": data is not None and typed_secret(found, data),
        "flash": take_flash(request),
    }
    response = render(request, "target_edit.html", context, status_code=status_code)
    clear_flash(request, response)
    return response


@router.get("/targets/new", name="target_new")
async def new_target(request: Request, _session: AdminSession) -> Response:
    """The form for a new target of the type chosen (``?type=``)."""
    kind = request.query_params.get("type", "dicom")
    problems = []
    if kind not in TYPES:
        problems.append(f"There is no target type {kind[:40]!r}; choose one of the list.")
        kind = "dicom"
    try:
        file, _document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    return _form_page(
        request,
        name="",
        kind=kind,
        stored_name="",
        stored={"type": kind},
        version=file.version,
        using=[],
        problems=problems,
    )


@router.get("/targets/{target}", name="target")
async def target_page(request: Request, _session: ViewerSession, target: str) -> Response:
    """One target's form (read-only for viewers; operators may test, admins save)."""
    name = target
    try:
        file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    stored = document.get(("targets", name))
    if not isinstance(stored, dict) or stored.get("type") not in TYPES:
        return render(
            request,
            "error.html",
            {"title": "No such target", "message": f"There is no target {name[:64]!r}."},
            status_code=404,
        )
    return _form_page(
        request,
        name=name,
        kind=stored["type"],
        stored_name=name,
        stored=stored,
        version=file.version,
        using=rules_using(document.plain()).get(name, []),
    )


# --- testing ----------------------------------------------------------------------------------
def _stored_secrets(request: Request, stored_name: str) -> dict[str, str]:
    """The secrets of the saved target ``stored_name`` as the running configuration has them
    (``${VAR}`` expanded), for the fields a test leaves empty."""
    target = web_context(request).config.targets.get(stored_name)
    found = {}
    for key in ("password", "token", "secret_access_key"):
        secret = getattr(target, key, None)
        if secret is not None:
            found[key] = secret.get_secret_value()
    return found


def _definition(
    request: Request, kind: str, value: dict[str, Any], stored_name: str
) -> dict[str, Any]:
    """The definition to test: KEEP replaced by the stored secret, ``${VAR}`` expanded, a
    relative folder made absolute as loading does; ValueError naming what is wrong."""
    secrets = _stored_secrets(request, stored_name) if stored_name else {}
    plain = {k: secrets.get(k, "") if v is KEEP else v for k, v in value.items()}
    plain = {k: v for k, v in plain.items() if v != "" or k not in secrets}
    expanded, issues = expand_env(plain)
    if issues:
        raise ValueError("; ".join(str(issue) for issue in issues))
    if kind == "folder" and isinstance(expanded.get("folder"), str):
        folder = Path(expanded["folder"])
        config_path = web_context(request).config_path
        if not folder.is_absolute() and config_path is not None:
            expanded["folder"] = str((config_path.resolve().parent / folder).resolve())
    try:
        _target_adapter.validate_python(expanded)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(
                f"{format_path(error['loc'][1:]) or 'target'}: {error['msg']}"
                for error in exc.errors(include_url=False, include_input=False)
            )
        ) from None
    return dict(expanded)


def _check_stored_secrets_stay(
    session: Session, value: dict[str, Any], stored: dict[str, Any]
) -> None:
    """Refuse an operator's test that would send a stored secret somewhere else.

    Operators may not read secrets; a test with a stored password and a changed URL or host
    would hand the password to whoever answers there. So an operator's test uses a stored
    secret only with every other setting as saved; admins, who may save such a change
    anyway, may test it too.
    """
    if session.role.allows(Role.ADMIN) or not any(v is KEEP for v in value.values()):
        return
    secret_keys = {k for k, v in value.items() if v is KEEP}
    changed = sorted(
        key
        for key in set(value) | set(stored)
        if key not in secret_keys
        and key not in ("comment", "max_parallel_tasks")
        and not _same_value(value.get(key), stored.get(key))
    )
    if changed:
        raise ValueError(
            f"{', '.join(changed)} changed: a test with the stored "
            f"{' and '.join(sorted(secret_keys))} uses the saved settings only (testing new "
            "settings with a stored secret needs the admin role). Type the secret to test "
            "with these values."
        )


def _same_value(a: Any, b: Any) -> bool:
    """Whether two plain values mean the same setting (``104`` and ``104.0``, absent and
    ``None`` and ``{}`` for an unset section)."""
    empty: tuple[Any, ...] = (None, {}, [], "")
    if a in empty and b in empty:
        return True
    return bool(a == b)


@router.post("/targets/test", name="target_test")
async def test_target(request: Request, session: OperatorSession) -> Response:
    """Test the form's values (saved or not) and show each step."""
    form = FormData(await request.form())
    stored_name = form.last("stored_name") or ""
    name = (form.last("target_name") or "").strip() or stored_name or "new"
    try:
        _file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    stored = document.get(("targets", stored_name)) if stored_name else None
    stored = stored if isinstance(stored, dict) else {}
    kind = str(stored.get("type") or form.last("type") or "")
    report: TargetTestReport | None = None
    problem = ""
    if kind not in TYPES:
        problem = "Choose a target type first."
    else:
        try:
            value = parse_form(
                TYPES[kind], form, stored or {"type": kind}, base_path=("targets", name)
            )
            _check_stored_secrets_stay(session, value, stored)
            definition = _definition(request, kind, value, stored_name)
        except FormErrors as exc:
            problem = "Cannot test: " + "; ".join(exc.errors.values())
        except ValueError as exc:
            problem = f"Cannot test: {exc}"
        else:
            report = await run_target_test(name[:64], definition)
            audit(
                request,
                "target.test",
                f"target {name}",
                f"test of {name}: {'ok' if report.ok else 'failed'}: {report.summary}",
                ok=report.ok,
            )
    context = {"report": report, "problem": problem, "name": name}
    if "hx-request" in request.headers:
        return render(request, "targets/_test_result.html", context)
    return render(request, "target_test.html", context)


# --- saving -----------------------------------------------------------------------------------
def _rename_in_rules(document: Document, old: str, new: str) -> None:
    for rule, body in (document.get(("rules",)) or {}).items():
        if not isinstance(body, dict):
            continue
        for key in ("targets", "target"):
            value = body.get(key)
            if isinstance(value, str) and value == old:
                document.set(("rules", rule, key), new)
            elif isinstance(value, list) and old in value:
                document.set(("rules", rule, key), [new if v == old else v for v in value])


async def _save(request: Request, stored_name: str) -> Response:
    form = FormData(await request.form())
    kind = form.last("type") or ""
    name = (form.last("target_name") or "").strip()
    version = form.last("config_version") or ""
    try:
        _file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    stored = document.get(("targets", stored_name)) if stored_name else None
    if stored_name and not isinstance(stored, dict):
        return redirect_with(
            request, url(request, "targets"), f"There is no target {stored_name!r} any more.", "bad"
        )
    stored = stored if isinstance(stored, dict) else {}
    if stored_name:
        kind = str(stored.get("type"))
    if kind not in TYPES:
        kind = "dicom"
    stored = stored or {"type": kind}

    def again(message: str = "", **shown: Any) -> Response:
        return _form_page(
            request,
            name=name,
            kind=kind,
            stored_name=stored_name,
            stored=stored,
            version=version,
            using=rules_using(document.plain()).get(stored_name, []),
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
            "A target name is 1 to 64 letters, digits, spaces, '_', '.' or '-', starting with a "
            "letter or digit.",
            name_error="not a valid name",
        )
    try:
        value = parse_form(TYPES[kind], form, stored, base_path=("targets", stored_name or name))
    except FormErrors as exc:
        return again(
            "Some values cannot be read; see the fields marked.",
            value=exc.value,
            issues=form_error_issues(exc),
        )

    renamed = bool(stored_name) and name != stored_name

    def edit(doc: Document) -> None:
        if (not stored_name or renamed) and doc.has(("targets", name)):
            raise EditRefused(f"There is a target named {name!r} already; choose another name.")
        if stored_name and not doc.has(("targets", stored_name)):
            raise EditRefused(f"The target {stored_name!r} was removed meanwhile.", conflict=True)
        if renamed:
            doc.rename(("targets", stored_name), name)
            _rename_in_rules(doc, stored_name, name)
        doc.set(("targets", name), value)

    what = "added" if not stored_name else f"renamed from {stored_name}" if renamed else "changed"
    try:
        await save_edit(
            request, edit, version=version, summary=f"target {name} {what}", object=f"target {name}"
        )
    except EditRefused as refused:
        return again(value=value, refused=refused)
    return redirect_with(request, url(request, "target", target=name), f"Target {name} saved.")


@router.post("/targets/new", name="target_create")
async def create_target(request: Request, _session: AdminSession) -> Response:
    """Add a target."""
    return await _save(request, "")


@router.post("/targets/{target}", name="target_save")
async def save_target(request: Request, _session: AdminSession, target: str) -> Response:
    """Save a target's form (a new name renames it, in the rules too)."""
    return await _save(request, target)


# --- deleting ---------------------------------------------------------------------------------
@router.get("/targets/{target}/delete", name="target_delete_confirm")
async def confirm_delete(request: Request, _session: AdminSession, target: str) -> Response:
    """The confirmation step of deleting a target (refused while rules use it)."""
    name = target
    try:
        file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    exists = document.has(("targets", name))
    context = {
        "name": name,
        "exists": exists,
        "using": rules_using(document.plain()).get(name, []),
        "config_version": file.version,
    }
    return render(request, "target_delete.html", context, status_code=200 if exists else 404)


@router.post("/targets/{target}/delete", name="target_delete")
async def delete_target(request: Request, _session: AdminSession, target: str) -> Response:
    """Delete a target, once confirmed, unless a rule uses it."""
    name = target
    form = await request.form()
    back = url(request, "target", target=name)
    if form.get("confirm") != name:
        return redirect_with(request, back, "Deleting needs the confirmation step.", "bad")

    def edit(doc: Document) -> None:
        if not doc.has(("targets", name)):
            raise EditRefused(f"There is no target {name!r} any more.")
        using = rules_using(doc.plain()).get(name, [])
        if using:
            raise EditRefused(
                f"Target {name} is used by the rule{'s' if len(using) > 1 else ''} "
                f"{', '.join(using)}: change {'them' if len(using) > 1 else 'it'} first."
            )
        doc.delete(("targets", name))

    try:
        await save_edit(
            request,
            edit,
            version=str(form.get("config_version", "")),
            summary=f"target {name} deleted",
            object=f"target {name}",
        )
    except EditRefused as refused:
        return redirect_with(request, back, refused.message, "bad")
    return redirect_with(request, url(request, "targets"), f"Target {name} was deleted.")
