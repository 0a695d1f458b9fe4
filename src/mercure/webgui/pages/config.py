"""The raw configuration page and its history: mercure.yaml as text, every version, restore.

- ``GET /config`` (every role): the file as it is, each secret shown as ``<secret>``
  (:func:`~mercure.core.config.editing.masked_text`; ``${VARIABLE}`` references are shown).
  Admins edit it in place: *Check* (htmx, ``POST /config/check``) lists what ``check-config``
  would say, by key path, and syntax errors with line and column; *Save* (``POST /config``)
  puts the masked secrets back, refuses a file that changed since the page was opened ("changed
  since you opened it", the typed text stays on the page), validates and saves through
  :func:`mercure.webgui.configedit.save_whole_text` (history, audit, reload).
- ``GET /config/history`` (every role): the current version and every archived one, newest
  first, with who saved it and what changed (or "edited outside the web interface"), and a diff
  of any two (``?a=NAME&b=NAME`` or ``current``) of their **masked** texts.
  ``GET /config/history/view?name=NAME`` shows one version, masked.
- ``POST /config/history/restore`` (admins): makes an archived version current again through
  the same save path (validated, recorded with ``restored_from``, audited ``config.restore``).

Version names come only from :func:`mercure.core.config.history.list_versions`; any other name
is answered 404, so no path reaches a file outside the history folder.

Secrets never go to the browser: when a refused save sends the typed text back, each secret in
it is masked again; one the admin had typed new (not the stored one) is replaced by
:data:`RETYPE`, which a save refuses, so that a secret is typed again rather than lost.
"""

from __future__ import annotations

import asyncio
import difflib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response

from mercure.core.config.editing import (
    MASK,
    SECRET_PATH_KEYS,
    ConfigFile,
    Document,
    is_env_reference,
    masked_text,
    version_of,
)
from mercure.core.config.history import (
    DEFAULT_KEEP,
    ChangeRecord,
    history_dir,
    list_changes,
    list_versions,
    version_path,
)
from mercure.core.config.loader import format_path, parse_document, validate_document
from mercure.core.errors import ConfigError
from mercure.webgui.auth import AdminSession, ViewerSession
from mercure.webgui.configedit import (
    EditRefused,
    check_text,
    config_path_of,
    restore_archived,
    save_whole_text,
)
from mercure.webgui.flash import clear_flash, redirect_with, take_flash
from mercure.webgui.rendering import render, url
from mercure.webgui.roles import Role
from mercure.webgui.sessions import Session

router = APIRouter()

MAX_TEXT = 512 << 10
"""The largest configuration text a save accepts (bytes of UTF-8). A form field over 1 MiB is
refused before it reaches the page anyway (Starlette's limit), as is a request body over
``webgui.max_request_kb``; real files are a few kB."""
RETYPE = "<type it again>"
"""Stands, in a text sent back after a refused save, for a secret the admin had typed new."""
CURRENT = "current"
"""The name of the file as it is now, beside the archived versions' names."""
MAX_DIFF_LINES = 5000
MIN_SCRUB = 8
Text = Annotated[str, Form()]


@dataclass
class Version:
    """One version of the file: the current one or an archived one, and who saved it."""

    name: str
    """``current`` or the archived file's name."""
    text: str
    version: str
    until: datetime | None
    """When it was replaced (None for the current one)."""
    record: ChangeRecord | None = None
    """The save that made it, when recorded (None: edited outside the web interface)."""
    restored_from: str | None = None
    changes: list[str] = field(default_factory=list)
    modified: datetime | None = None
    """The file's modification time (the current version only: when it was hand-edited)."""

    @property
    def current(self) -> bool:
        return self.name == CURRENT


# --- reading ---------------------------------------------------------------------------------


def _archived_at(name: str) -> datetime | None:
    """When an archived version was replaced, from its name (``<UTC time>-<file name>``)."""
    try:
        return datetime.strptime(name.split("-", 1)[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _versions(path: Path) -> list[Version]:
    """The current version and every archived one, newest first, each with the save that made
    it (the latest recorded save of the same content before it was replaced)."""
    records = list_changes(path)
    current = ConfigFile.read(path)
    try:
        modified: datetime | None = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        modified = None
    versions = [Version(CURRENT, current.text, current.version, None, modified=modified)]
    for archived in reversed(list_versions(path)):
        try:
            data = archived.read_bytes()
        except OSError:
            continue  # pruned meanwhile
        text = data.decode("utf-8", "replace")
        versions.append(Version(archived.name, text, version_of(data), _archived_at(archived.name)))
    for version in versions:
        made = [
            r
            for r in records
            if r.version == version.version and (version.until is None or r.time < version.until)
        ]
        if made:
            version.record = made[-1]
            version.restored_from = made[-1].restored_from
            version.changes = made[-1].changes
    return versions


def _find(versions: list[Version], name: str) -> Version:
    """The version called ``name`` (404 for any name the history does not list)."""
    for version in versions:
        if version.name == name:
            return version
    raise HTTPException(404, f"There is no version {name[:80]!r} in the history.")


def _path(request: Request) -> Path:
    try:
        return Path(config_path_of(request))
    except EditRefused as refused:
        raise HTTPException(404, refused.message) from None


def _may_edit(session: Session) -> bool:
    return session.role.allows(Role.ADMIN)


# --- secrets in a text sent back -----------------------------------------------------------

_LINE_SECRET_KEYS = SECRET_PATH_KEYS | {"hmac_secret"}
"""Keys whose value is masked on a line of a text that cannot be parsed (``url`` is not: a
DICOMweb target's is no secret; a stored webhook URL is still replaced by :func:`_scrub`)."""
_SECRET_LINE = re.compile(
    r"^(?P<head>\s*(?:-\s+)?[\"']?(?P<key>" + "|".join(sorted(_LINE_SECRET_KEYS)) + r")[\"']?"
    r"\s*:\s+)(?P<value>[^#\s].*?)\s*$"
)


def _masked_again(typed: str, stored: str, source: str) -> tuple[str, list[str]]:
    """``typed`` fit to be sent back to the browser: each secret masked again, and one that
    differs from the stored secret replaced by :data:`RETYPE`; and the key paths of those."""
    try:
        known = Document(stored, source)
    except ConfigError:
        known = Document("", source)
    try:
        document = Document(typed, source)
    except ConfigError:
        text, lines = _masked_lines(typed)
        return _scrub(text, known), lines
    retype: list[str] = []
    changed = False
    for path in list(document.secret_paths()):
        value = document.get(path)
        if not isinstance(value, str) or value in ("", MASK, RETYPE) or is_env_reference(value):
            continue
        changed = True
        if known.get(path) == value:
            document.set(path, MASK)
        else:
            document.set(path, RETYPE)
            retype.append(format_path(path))
    return (document.dump() if changed else typed), retype


def _masked_lines(typed: str) -> tuple[str, list[str]]:
    """The same, line by line, for a text that cannot be parsed (a syntax error)."""
    lines, retype = [], []
    for number, line in enumerate(typed.splitlines(keepends=True), start=1):
        match = _SECRET_LINE.match(line.rstrip("\r\n"))
        value = match.group("value").strip("\"'") if match else ""
        if match and value not in (MASK, RETYPE) and not is_env_reference(value):
            ending = line[len(line.rstrip("\r\n")) :]
            line = f"{match.group('head')}{RETYPE}{ending}"
            retype.append(f"line {number} ({match.group('key')})")
        lines.append(line)
    return "".join(lines), retype


def _scrub(text: str, known: Document) -> str:
    """``text`` without any stored secret in it, wherever it appears (for a text that cannot
    be parsed: a module's environment value on a line of its own, say). Short values are left
    alone: replacing a common word would change the typed text."""
    for path in list(known.secret_paths()):
        value = known.get(path)
        if isinstance(value, str) and len(value) >= MIN_SCRUB and not is_env_reference(value):
            text = text.replace(value, MASK)
    return text


def _retype_issues(text: str, source: str) -> list[tuple[str, str]]:
    """Where ``text`` still holds :data:`RETYPE` (a secret to type again)."""
    if RETYPE not in text:
        return []
    try:
        document = Document(text, source)
    except ConfigError:
        return []  # the syntax error is reported first
    return [
        (format_path(path), f"type the secret again in place of '{RETYPE}'")
        for path in document.secret_paths()
        if document.get(path) == RETYPE
    ]


def _too_big(text: str) -> str:
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT:
        return (
            f"The text is {size:,} bytes; a configuration file may have at most "
            f"{MAX_TEXT:,} bytes. Nothing was saved."
        )
    return ""


# --- the raw configuration -----------------------------------------------------------------


def _config_page(
    request: Request,
    session: Session,
    *,
    text: str | None = None,
    version: str | None = None,
    error: str = "",
    issues: list[tuple[str, str]] | None = None,
    conflict: bool = False,
    status_code: int = 200,
) -> Response:
    path = _path(request)
    file = ConfigFile.read(path)
    unreadable, file_issues = _state_of(file)
    context: dict[str, Any] = {
        "path": str(path),
        "unreadable": unreadable,
        "file_issues": file_issues,
        "text": masked_text(file.text, str(path)) if text is None else text,
        "config_version": file.version if version is None else version,
        "may_edit": _may_edit(session) and not unreadable,
        "error": error,
        "issues": issues or [],
        "conflict": conflict,
        "mask": MASK,
        "retype": RETYPE,
        "flash": take_flash(request),
        "archived": len(list_versions(path)),
    }
    response = render(request, "config.html", context, status_code=status_code)
    clear_flash(request, response)
    return response


def _state_of(file: ConfigFile) -> tuple[str, list[tuple[str, str]]]:
    """What is wrong with the file as it is now: a syntax error (it is not shown then: a secret
    could be in plain sight; it must be mended on the server), or the issues of check-config
    (the services keep running on their last good configuration meanwhile)."""
    source = str(file.path)
    try:
        raw = parse_document(file.text, source)
        Document(file.text, source)
    except ConfigError as exc:
        return exc.issues[0].message, []
    try:
        validate_document(raw, source=source, base_dir=file.path.resolve().parent)
    except ConfigError as exc:
        return "", [(issue.path, issue.message) for issue in exc.issues]
    return "", []


@router.get("/config", name="config")
async def config_page(request: Request, session: ViewerSession) -> Response:
    """The configuration file as text, secrets masked; admins edit it."""
    return _config_page(request, session)


@router.post("/config", name="config_save")
async def save_config(
    request: Request,
    session: AdminSession,
    text: Text = "",
    config_version: Text = "",
) -> Response:
    """Save the edited text (masks put back), if the file is still the version opened."""
    path = _path(request)

    def refuse(
        message: str,
        issues: list[tuple[str, str]] | None = None,
        *,
        conflict: bool = False,
        status_code: int = 422,
    ) -> Response:
        stored = ConfigFile.read(path).text
        shown, retyped = _masked_again(text, stored, str(path))
        if retyped:
            message += (
                " Secrets you typed are not sent back to the browser: type them again where "
                f"the text says '{RETYPE}' ({', '.join(retyped)})."
            )
        return _config_page(
            request,
            session,
            text=shown,
            version=config_version,
            error=message,
            issues=issues,
            conflict=conflict,
            status_code=status_code,
        )

    if too_big := _too_big(text):
        return refuse(too_big, status_code=413)
    if not config_version:
        return refuse("The form did not say which version it was opened with; open the page again.")
    if not text.strip():
        return refuse("The text is empty. Nothing was saved.")
    if retype := _retype_issues(text, str(path)):
        return refuse("Nothing was saved: " + retype[0][0] + ": " + retype[0][1] + ".", retype)
    try:
        saved = await save_whole_text(request, text, version=config_version)
    except EditRefused as refused:
        return refuse(
            refused.message[0].upper() + refused.message[1:],
            refused.issues,
            conflict=refused.conflict,
            status_code=409 if refused.conflict else 422,
        )
    what = "; ".join(saved.changes[:8]) or "no change to the settings (comments or layout only)"
    return redirect_with(request, url(request, "config"), f"Saved. {what}.")


@router.post("/config/check", name="config_check")
async def check_config(
    request: Request,
    session: AdminSession,
    text: Text = "",
    config_version: Text = "",
) -> Response:
    """What a save of the text would be refused for (a fragment; nothing is saved)."""
    path = _path(request)
    issues: list[tuple[str, str]] = []
    problem = _too_big(text)
    if not problem:
        issues = _retype_issues(text, str(path)) or await asyncio.to_thread(
            check_text, request, text
        )
    current = ConfigFile.read(path).version
    context = {
        "problem": problem,
        "issues": issues,
        "stale": bool(config_version) and config_version != current,
    }
    return render(request, "config/_check.html", context)


# --- history -------------------------------------------------------------------------------


def _diff(old: Version, new: Version, source: str) -> list[tuple[str, str]]:
    """The unified diff of two versions' masked texts, as (CSS class, line) pairs."""
    lines = difflib.unified_diff(
        masked_text(old.text, source).splitlines(),
        masked_text(new.text, source).splitlines(),
        fromfile=old.name,
        tofile=new.name,
        lineterm="",
        n=3,
    )
    shown: list[tuple[str, str]] = []
    for line in lines:
        if len(shown) >= MAX_DIFF_LINES:
            shown.append(("diff-more", "… (the rest of the difference is not shown)"))
            break
        if line.startswith(("---", "+++")):
            kind = "diff-file"
        elif line.startswith("@@"):
            kind = "diff-hunk"
        elif line.startswith("+"):
            kind = "diff-add"
        elif line.startswith("-"):
            kind = "diff-del"
        else:
            kind = "diff-same"
        shown.append((kind, line))
    return shown


def _history_page(
    request: Request,
    session: Session,
    *,
    error: str = "",
    issues: list[tuple[str, str]] | None = None,
    status_code: int = 200,
) -> Response:
    path = _path(request)
    versions = _versions(path)
    params = request.query_params
    a, b = params.get("a", ""), params.get("b", "")
    diff: list[tuple[str, str]] | None = None
    older = newer = None
    if a or b:
        older = _find(versions, a or (versions[1].name if len(versions) > 1 else CURRENT))
        newer = _find(versions, b or CURRENT)
        diff = _diff(older, newer, str(path))
    context: dict[str, Any] = {
        "versions": versions,
        "current": versions[0],
        "diff": diff,
        "older": older,
        "newer": newer,
        "may_restore": _may_edit(session),
        "error": error,
        "issues": issues or [],
        "flash": take_flash(request),
        "history_dir": str(history_dir(path)),
        "keep": DEFAULT_KEEP,
        "file_name": path.name,
    }
    response = render(request, "config_history.html", context, status_code=status_code)
    clear_flash(request, response)
    return response


@router.get("/config/history", name="config_history")
async def history_page(request: Request, session: ViewerSession) -> Response:
    """Every version, who saved it and what changed; the diff of two (``?a=..&b=..``)."""
    return _history_page(request, session)


@router.get("/config/history/view", name="config_history_view")
async def view_version(request: Request, session: ViewerSession) -> Response:
    """One version of the file, secrets masked (``?name=NAME``)."""
    path = _path(request)
    name = request.query_params.get("name", "")
    versions = _versions(path)
    shown = _find(versions, name)
    context = {
        "shown": shown,
        "text": masked_text(shown.text, str(path)),
        "current": versions[0],
        "may_restore": _may_edit(session) and not shown.current,
    }
    return render(request, "config_version.html", context)


@router.post("/config/history/restore", name="config_restore")
async def restore_version(
    request: Request,
    session: AdminSession,
    name: Text = "",
    config_version: Text = "",
) -> Response:
    """Make an archived version current again (validated, recorded, audited)."""
    path = _path(request)
    try:
        version_path(path, name)
    except FileNotFoundError:
        raise HTTPException(404, f"There is no version {name[:80]!r} in the history.") from None
    if not config_version:
        return _history_page(
            request,
            session,
            error="The form did not say which version is current; open the page again.",
            status_code=422,
        )
    try:
        saved = await restore_archived(request, name, version=config_version)
    except FileNotFoundError:
        raise HTTPException(404, f"There is no version {name[:80]!r} in the history.") from None
    except EditRefused as refused:
        message = refused.message[0].upper() + refused.message[1:]
        if not refused.conflict:
            message = f"The version {name} was not restored: it is not valid now. {message}"
        return _history_page(
            request,
            session,
            error=message,
            issues=refused.issues,
            status_code=409 if refused.conflict else 422,
        )
    what = "; ".join(saved.changes[:8]) or "no change to the settings"
    location = url(request, "config_history") + "?" + urlencode({"a": name, "b": CURRENT})
    return redirect_with(request, location, f"Restored the version {name}. {what}.")
