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
  rule uses it, naming the rules. What the Targets and Modules pages share is
  :class:`mercure.webgui.namedobjects.NamedKind`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from mercure.core.config.editing import KEEP
from mercure.core.config.loader import expand_env, format_path
from mercure.core.config.models import (
    DicomTarget,
    DicomWebTarget,
    FolderTarget,
    RsyncTarget,
    S3Target,
    SftpTarget,
    Target,
    XnatTarget,
)
from mercure.core.config.targettypes import installed_types
from mercure.core.targettest import TargetTestReport
from mercure.webgui.audit import audit
from mercure.webgui.auth import OperatorSession, ViewerSession
from mercure.webgui.bookkeeper import BookkeeperError, TargetStatistics
from mercure.webgui.configedit import Unreadable, open_config, unreadable_page
from mercure.webgui.context import web_context
from mercure.webgui.flash import clear_flash, take_flash
from mercure.webgui.forms import FormData, FormErrors, parse_form
from mercure.webgui.namedobjects import NamedKind, may
from mercure.webgui.rendering import render
from mercure.webgui.roles import Role
from mercure.webgui.sessions import Session
from mercure.webgui.targettest import run_target_test

router = APIRouter()

ORDER = ("dicom", "dicomweb", "sftp", "s3", "folder", "rsync", "xnat", "dummy")
"""The built-in types in the order the type menu shows them; plug-ins' types follow."""


class _InstalledTypes(Mapping[str, type[BaseModel]]):
    """The models of the installed target types (plug-ins included), read when used: a type's
    form is built from its model's fields, whoever wrote it."""

    def _names(self) -> list[str]:
        installed = installed_types()
        rest = sorted(name for name in installed if name not in ORDER)
        return [name for name in ORDER if name in installed] + rest

    def __getitem__(self, name: str) -> type[BaseModel]:
        return installed_types()[name].model

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(installed_types())


class _TypeHelp(Mapping[str, str]):
    """One line per type for the type menu: ours below, else the first line of the model's
    docstring."""

    BUILT_IN = {
        "dicom": "a DICOM node (C-STORE), optionally over TLS",
        "dicomweb": "a DICOMweb server (STOW-RS)",
        "sftp": "an SFTP server, a folder per task",
        "s3": "an S3 bucket or S3-compatible store",
        "folder": "a local or mounted folder, a folder per task",
        "rsync": "a folder on an SSH server, copied with rsync, a folder per task",
        "xnat": "an XNAT server (image session import)",
        "dummy": "accepts and discards (for trying rules)",
    }

    def __getitem__(self, name: str) -> str:
        if name in self.BUILT_IN:
            return self.BUILT_IN[name]
        doc = (installed_types()[name].model.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else f"plug-in {name}"

    def __iter__(self) -> Iterator[str]:
        return iter(TYPES)

    def __len__(self) -> int:
        return len(TYPES)


TYPES: Mapping[str, type[BaseModel]] = _InstalledTypes()
TYPE_HELP: Mapping[str, str] = _TypeHelp()
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
RESERVED = ("new", "test")
"""Names that are this page's own addresses (``/targets/new``): refused for a new name."""


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
    if isinstance(target, RsyncTarget):
        return f"{target.user}@{target.host}:{target.port}:{target.folder} (rsync)"
    if isinstance(target, XnatTarget):
        return f"{target.host} project {target.project_id}"
    where_to = getattr(target, "where", None)  # a plug-in's model may say it
    return str(where_to()) if callable(where_to) else ""


TARGETS = NamedKind(
    section="targets",
    noun="target",
    discriminator="type",
    models=TYPES,
    help=TYPE_HELP,
    uses=("targets", "target"),
    reserved=RESERVED,
    testable=True,
)


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
        using = TARGETS.rules_using(document.plain())
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


# --- testing ----------------------------------------------------------------------------------
def _stored_secrets(request: Request, stored_name: str) -> dict[str, str]:
    """The secrets of the saved target ``stored_name`` as the running configuration has them
    (``${VAR}`` expanded), for the fields a test leaves empty."""
    target = web_context(request).config.targets.get(stored_name)
    found = {}
    for key in type(target).model_fields if target is not None else ():
        secret = getattr(target, key, None)
        if isinstance(secret, SecretStr):  # any type's secrets, a plug-in's too
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
        TypeAdapter(Target).validate_python(expanded)  # built per test: the installed types
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


TARGETS.add_routes(router)  # after /targets/test, which /targets/{target} would match
