"""The Sources page: the PACS and DICOMweb servers studies are queried and retrieved from.

- ``GET /sources`` (every role): each source's type, where it is (AE title, host and port, or
  URL; never a credential), how it retrieves (C-GET, C-MOVE to which AE title, WADO-RS) and
  its parallel limit.
- ``GET /sources/new?type=dicom`` and ``GET /sources/{source}``: the form of one source, every
  field of ``DicomSource`` / ``DicomWebSource`` (:mod:`mercure.webgui.forms`); the password
  and token are write-only.
- ``POST /sources/test`` (operator): tests the form's values, saved or not, with ``mercure
  test-source NAME --json --definition -`` as a subprocess (:mod:`mercure.webgui.sourcetest`):
  connect, C-ECHO and a one-study C-FIND, or a one-study QIDO-RS search. Secrets left empty
  are the stored ones; an operator may use them only with the saved settings.
- ``POST /sources/new``, ``POST /sources/{source}``, ``POST /sources/{source}/delete``
  (admin): saved through :func:`mercure.webgui.configedit.save_edit`, as targets are
  (:class:`mercure.webgui.namedobjects.NamedKind`); no rule names a source.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from mercure.core.config.editing import KEEP
from mercure.core.config.loader import expand_env, format_path
from mercure.core.config.models import DicomSource, DicomWebSource, Source
from mercure.core.targettest import TargetTestReport
from mercure.webgui.audit import audit
from mercure.webgui.auth import OperatorSession, ViewerSession
from mercure.webgui.configedit import Unreadable, open_config, unreadable_page
from mercure.webgui.context import web_context
from mercure.webgui.flash import clear_flash, take_flash
from mercure.webgui.forms import FormData, FormErrors, parse_form
from mercure.webgui.namedobjects import NamedKind, may
from mercure.webgui.rendering import render
from mercure.webgui.roles import Role
from mercure.webgui.sessions import Session
from mercure.webgui.sourcetest import run_source_test

router = APIRouter()

TYPES: dict[str, type[BaseModel]] = {"dicom": DicomSource, "dicomweb": DicomWebSource}
TYPE_HELP = {
    "dicom": "a PACS or DICOM node: C-FIND, and C-GET or C-MOVE",
    "dicomweb": "a DICOMweb server: QIDO-RS and WADO-RS",
}
SOURCES = NamedKind(
    section="sources",
    noun="source",
    discriminator="type",
    models=TYPES,
    help=TYPE_HELP,
    uses=(),
    reserved=("new", "test"),
    testable=True,
    name_help="The name `mercure query` and `mercure retrieve` take.",
)
HARMLESS = frozenset({"comment", "max_associations", "max_requests", "timeout"})
"""Settings an operator may change in a test that uses a stored secret."""


def where(source: Any) -> str:
    """Where a source is, in one line, without any credential."""
    if isinstance(source, DicomSource):
        tls = " (TLS)" if source.tls else ""
        return f"{source.aet_target}@{source.host}:{source.port}{tls}"
    if isinstance(source, DicomWebSource):
        return source.url
    return ""


def how(source: Any, listener_aet: str) -> str:
    """How a source's studies come here."""
    if isinstance(source, DicomSource):
        if source.retrieve_method == "c-move":
            return f"C-MOVE to {source.move_destination or listener_aet}"
        return "C-GET"
    return "WADO-RS"


@router.get("/sources", name="sources")
async def sources_page(request: Request, _session: ViewerSession) -> Response:
    """Every source, where it is and how it retrieves."""
    web = web_context(request)
    problem = ""
    try:
        open_config(request)
    except Unreadable as exc:
        problem = str(exc)
    listeners = web.config.receiver.listeners
    listener_aet = listeners[0].aet if listeners else "?"
    sources = [
        {
            "name": name,
            "type": source.type,
            "where": where(source),
            "how": how(source, listener_aet),
            "parallel": source.max_associations
            if isinstance(source, DicomSource)
            else source.max_requests,
            "comment": source.comment,
        }
        for name, source in sorted(web.config.sources.items())
    ]
    context = {
        "sources": sources,
        "retrieve": web.config.retrieve,
        "problem": problem,
        "may_edit": may(request, Role.ADMIN),
        "flash": take_flash(request),
    }
    response = render(request, "sources.html", context)
    clear_flash(request, response)
    return response


# --- testing ----------------------------------------------------------------------------------
def _definition(request: Request, value: dict[str, Any], stored_name: str) -> dict[str, Any]:
    """The definition to test: KEEP replaced by the stored secret, ``${VAR}`` expanded;
    ValueError naming what is wrong."""
    source = web_context(request).config.sources.get(stored_name) if stored_name else None
    secrets = {
        key: secret.get_secret_value()
        for key in ("password", "token")
        if isinstance(secret := getattr(source, key, None), SecretStr)
    }
    plain = {k: secrets.get(k, "") if v is KEEP else v for k, v in value.items()}
    plain = {k: v for k, v in plain.items() if v != "" or k not in secrets}
    expanded, issues = expand_env(plain)
    if issues:
        raise ValueError("; ".join(str(issue) for issue in issues))
    try:
        TypeAdapter(Source).validate_python(expanded)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(
                f"{format_path(error['loc'][1:]) or 'source'}: {error['msg']}"
                for error in exc.errors(include_url=False, include_input=False)
            )
        ) from None
    return dict(expanded)


def _check_stored_secrets_stay(
    session: Session, value: dict[str, Any], stored: dict[str, Any]
) -> None:
    """Refuse an operator's test that would send a stored password or token elsewhere (a
    changed URL or user name would hand it to whoever answers there)."""
    if session.role.allows(Role.ADMIN) or not any(v is KEEP for v in value.values()):
        return
    empty: tuple[Any, ...] = (None, {}, [], "")
    changed = sorted(
        key
        for key in set(value) | set(stored)
        if key not in HARMLESS
        and value.get(key) is not KEEP
        and value.get(key) != stored.get(key)
        and not (value.get(key) in empty and stored.get(key) in empty)
    )
    if changed:
        raise ValueError(
            f"{', '.join(changed)} changed: a test with a stored secret uses the saved "
            "settings only (testing new settings with a stored secret needs the admin role). "
            "Type the secret to test with these values."
        )


@router.post("/sources/test", name="source_test")
async def test_source(request: Request, session: OperatorSession) -> Response:
    """Test the form's values (saved or not) and show each step."""
    form = FormData(await request.form())
    stored_name = form.last("stored_name") or ""
    name = (form.last(SOURCES.name_field) or "").strip() or stored_name or "new"
    try:
        _file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    stored = document.get(("sources", stored_name)) if stored_name else None
    stored = stored if isinstance(stored, dict) else {}
    kind = str(stored.get("type") or form.last("type") or "")
    report: TargetTestReport | None = None
    problem = ""
    if kind not in TYPES:
        problem = "Choose a source type first."
    else:
        try:
            value = parse_form(
                TYPES[kind], form, stored or {"type": kind}, base_path=("sources", name)
            )
            _check_stored_secrets_stay(session, value, stored)
            definition = _definition(request, value, stored_name)
        except FormErrors as exc:
            problem = "Cannot test: " + "; ".join(exc.errors.values())
        except ValueError as exc:
            problem = f"Cannot test: {exc}"
        else:
            report = await run_source_test(name[:64], definition)
            audit(
                request,
                "source.test",
                f"source {name}",
                f"test of {name}: {'ok' if report.ok else 'failed'}: {report.summary}",
                ok=report.ok,
            )
    context = {"report": report, "problem": problem, "name": name}
    if "hx-request" in request.headers:
        return render(request, "targets/_test_result.html", context)
    return render(request, "source_test.html", context)


SOURCES.add_routes(router)  # after /sources/test, which /sources/{source} would match
