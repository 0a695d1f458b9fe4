"""The settings pages: every section of ``mercure.yaml`` but rules, targets, modules, sources and
notification channels.

``/settings`` (general: ``data_dir``, ``appliance_name``) and ``/settings/<section>`` for
receiver (listeners), router, processing, dispatch, retrieve, scale_out, offpeak, cleaner,
bookkeeper, webgui, notifier, events, logging and supervisor. The forms come from the models
(:mod:`mercure.webgui.forms`), so every field of a section has its control; a save goes through
:func:`mercure.webgui.configedit.save_edit`: refused when the file changed since the form was
opened, validated like ``check-config`` (each issue shown at its field, the input kept),
written keeping comments, audited with a summary of the change.

Every role sees the settings (secrets never: they are write-only); only admins save.
Running services pick up a saved file by themselves; :data:`RESTART` says which settings take
effect only when a service restarts, as found in the services' reload code (``on_config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mercure.core.config.editing import Document
from mercure.core.config.models import (
    BookkeeperConfig,
    CleanerConfig,
    DispatchConfig,
    EventsConfig,
    LoggingConfig,
    MercureConfig,
    NotifierConfig,
    ProcessingConfig,
    ReceiverConfig,
    RetrieveConfig,
    RouterConfig,
    ScaleOutConfig,
    SupervisorConfig,
    WebGuiConfig,
)
from mercure.core.config.types import TimeWindow
from mercure.webgui import forms
from mercure.webgui.auth import AdminSession, ViewerSession
from mercure.webgui.configedit import EditRefused, Unreadable, open_config, refusal, save_edit
from mercure.webgui.flash import clear_flash, redirect_with, take_flash
from mercure.webgui.rendering import render, url
from mercure.webgui.roles import Role
from mercure.webgui.sessions import Session

router = APIRouter()

RESTART_ALL = "needs a restart of every service (mercure run, or each unit)"


@dataclass(frozen=True)
class Section:
    """A settings page: the part of the document it edits and the model of that part."""

    key: str
    title: str
    model: type[BaseModel]
    intro: str
    fields: tuple[str, ...] | None = None
    """Only these fields of the model (the general page's top-level keys); None: all."""
    restart: dict[str, str] = field(default_factory=dict)
    """Notes by field path without list indices: what a change needs to take effect."""
    reload: str = ""
    """How the running services follow a change of this section."""

    @property
    def path(self) -> tuple[str, ...]:
        """The section's key path in the document (the general page's is the top)."""
        return () if self.fields is not None else (self.key,)


SECTIONS: tuple[Section, ...] = (
    Section(
        "general",
        "General",
        MercureConfig,
        "Where the data lives and what this installation is called.",
        fields=("data_dir", "appliance_name"),
        restart={
            "data_dir": "Takes effect only when the services restart: every service opens "
            "its stage folders and event outbox, the bookkeeper its SQLite file, at start. "
            "Move the folders first (docs/operations.md), then restart.",
        },
        reload="appliance_name is followed at once (new tasks and events carry it).",
    ),
    Section(
        "receiver",
        "Receiver",
        ReceiverConfig,
        "The DICOM listeners (ports, AE titles, allow-lists, TLS) and the receiver's limits.",
        restart={
            "listeners": "The receiver restarts a changed listener by itself (no service "
            "restart): its open associations get supervisor.stop_timeout to finish. A port "
            "that cannot be opened is reported as an error event and in the receiver's log.",
            "listeners.port": "The receiver restarts this listener on the new port at once; "
            "tell the senders.",
            "listeners.host": "The receiver restarts this listener on the new address at once.",
            "max_pdu": "Restarts every listener (as a listener change does).",
            "acse_timeout": "Restarts every listener (as a listener change does).",
            "idle_timeout": "Restarts every listener (as a listener change does).",
        },
        reload="fsync and min_free_disk_mb apply at once; a listener change restarts that "
        "listener (the receiver does it, no service restart).",
    ),
    Section(
        "router",
        "Router",
        RouterConfig,
        "When a series and a study count as complete.",
        reload="Applied by the router between series, without a restart.",
    ),
    Section(
        "processing",
        "Processing",
        ProcessingConfig,
        "How the processor runs modules (the modules themselves are on the Modules page).",
        reload="Applied by the processor before the next module it starts.",
    ),
    Section(
        "dispatch",
        "Dispatch",
        DispatchConfig,
        "The dispatcher's retries and parallel sending (targets are on the Targets page).",
        reload="Applied by the dispatcher to the next attempt.",
    ),
    Section(
        "retrieve",
        "Retrieve",
        RetrieveConfig,
        "How retrieve jobs fetch studies: tries per study, the wait between tries, studies at "
        "once (the sources are on the Sources page).",
        reload="Applied by the retriever to the studies it starts next.",
    ),
    Section(
        "scale_out",
        "Scale-out",
        ScaleOutConfig,
        "Processing and dispatch through a broker to `mercure worker`s on other hosts "
        "(docs/scale-out.md); off runs everything on this host.",
        reload="Needs a restart of the processor, the dispatcher and the workers.",
    ),
    Section(
        "offpeak",
        "Off-peak",
        TimeWindow,
        "The daily window for offpeak priority, and for cleaning when the cleaner has no "
        "window of its own.",
        reload="Applied at once by the processor, dispatcher and cleaner.",
    ),
    Section(
        "cleaner",
        "Cleaner",
        CleanerConfig,
        "Retention of finished tasks, and deleting under disk pressure.",
        reload="Applied by the cleaner at its next pass.",
    ),
    Section(
        "bookkeeper",
        "Bookkeeper",
        BookkeeperConfig,
        "The monitoring database and its API.",
        restart={
            "host": "Needs a restart of the bookkeeper.",
            "port": "Needs a restart of the bookkeeper (services follow url at once).",
            "database_url": "Needs a restart of the bookkeeper; the new database is "
            "created empty (events are not copied).",
        },
        reload="Keys, max_request_mb, metrics_open, retention and url are followed at once; "
        "host, port and database_url need a restart of the bookkeeper.",
    ),
    Section(
        "webgui",
        "Web interface",
        WebGuiConfig,
        "This web interface.",
        restart={
            "host": "Needs a restart of the web interface.",
            "port": "Needs a restart of the web interface.",
            "tls_certificate": "Needs a restart of the web interface.",
            "tls_key": "Needs a restart of the web interface.",
            "root_path": "Needs a restart of the web interface (and the proxy's settings).",
            "session_secret": "Needs a restart of the web interface, which signs everyone out.",
        },
        reload="trusted_proxies, the session timeouts and max_request_kb apply at once; "
        "address, port, TLS, root_path and session_secret need a restart of the web interface.",
    ),
    Section(
        "notifier",
        "Notifier",
        NotifierConfig,
        "How `mercure notifier` delivers the notifications the other services queue (the "
        "channels are on the Notifications page).",
        reload="mercure notifier follows a saved file at once, for the notifications it sends "
        "next.",
    ),
    Section(
        "events",
        "Events",
        EventsConfig,
        "The durable outbox every service writes its events to.",
        restart={
            "outbox_max_mb": RESTART_ALL + ": each opens its outbox at start.",
            "fsync": RESTART_ALL + ": each opens its outbox at start.",
        },
        reload="Both settings take effect when each service restarts.",
    ),
    Section(
        "logging",
        "Logging",
        LoggingConfig,
        "How the services log.",
        restart={
            name: RESTART_ALL + ": logging is set up when a service starts."
            for name in ("level", "format", "files", "max_file_mb", "keep_files")
        },
        reload="Every setting takes effect when each service restarts.",
    ),
    Section(
        "supervisor",
        "Supervisor",
        SupervisorConfig,
        "What `mercure run` starts and how it watches its services.",
        restart={
            "services": "Needs a restart of mercure run.",
            "restart_backoff_max": "Needs a restart of mercure run.",
            "heartbeat_interval": "The services follow it at once; mercure run's own check "
            "after a restart of mercure run.",
            "stop_timeout": "The services follow it at once; mercure run after its restart.",
        },
        reload="Read by mercure run when it starts; the services follow heartbeat_interval "
        "and stop_timeout themselves.",
    ),
)
BY_KEY = {section.key: section for section in SECTIONS}


def _section(key: str) -> Section | None:
    return BY_KEY.get(key)


def _object_value(document: Document, section: Section) -> dict[str, Any]:
    value = document.plain() if not section.path else document.get(section.path, {})
    return value if isinstance(value, dict) else {}


async def _page(
    request: Request,
    session: Session,
    section: Section,
    *,
    value: dict[str, Any] | None = None,
    stored: dict[str, Any] | None = None,
    version: str | None = None,
    issues: list[tuple[str, str]] | None = None,
    refused: EditRefused | None = None,
    error: str = "",
    add: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    """The section's page; with ``value`` a submitted form shown again with its issues (or
    the ``refused`` save's)."""
    unreadable = ""
    try:
        file, document = open_config(request)
        current = _object_value(document, section)
        file_version = file.version
        file_path = str(file.path)
    except Unreadable as exc:
        current, file_version, file_path = {}, "", ""
        unreadable = str(exc)
    controls = forms.build_form(
        section.model,
        current if value is None else value,
        stored=current if stored is None else stored,
        base_path=section.path,
        fields=section.fields,
        add=add or forms.requested_additions(request.query_params.getlist("add")),
        notes=section.restart,
    )
    prefix = ".".join(section.path)
    unplaced = forms.place_issues(controls, issues or [], prefix=prefix)
    if refused is not None:
        error, status_code = refusal(refused, forms.place_issues(controls, refused.issues, prefix))
    can_save = session.role.allows(Role.ADMIN) and not unreadable
    flash = take_flash(request)
    context = {
        "sections": SECTIONS,
        "section": section,
        "controls": controls,
        "readonly": not can_save,
        "is_admin": session.role.allows(Role.ADMIN),
        "config_version": version or file_version,
        "config_file": file_path,
        "error": error,
        "unplaced": unplaced,
        "unreadable": unreadable,
        "flash": flash,
        "action": _section_url(request, section),
    }
    response = render(request, "settings.html", context, status_code=status_code)
    clear_flash(request, response)
    return response


def _section_url(request: Request, section: Section) -> str:
    if section.key == "general":
        return url(request, "settings")
    return url(request, "settings_section", section=section.key)


@router.get("/settings", name="settings")
async def settings_page(request: Request, session: ViewerSession) -> Response:
    """The general settings, and the menu of the sections."""
    return await _page(request, session, BY_KEY["general"])


@router.get("/settings/{section}", name="settings_section")
async def section_page(request: Request, session: ViewerSession, section: str) -> Response:
    """One section of the settings."""
    found = _section(section)
    if found is None:
        return _not_found(request)
    return await _page(request, session, found)


def _not_found(request: Request) -> Response:
    return render(
        request,
        "error.html",
        {"title": "Not found", "message": "There is no such settings section."},
        status_code=404,
    )


@router.post("/settings", name="settings_save")
async def save_general(request: Request, session: AdminSession) -> Response:
    """Save the general settings."""
    return await _save(request, session, BY_KEY["general"])


@router.post("/settings/{section}", name="settings_section_save")
async def save_section(request: Request, session: AdminSession, section: str) -> Response:
    """Save one section (admins): validated, version-checked, audited."""
    found = _section(section)
    if found is None:
        return _not_found(request)
    return await _save(request, session, found)


async def _save(request: Request, session: Session, section: Section) -> Response:
    data = forms.FormData(await request.form())
    version = data.last("config_version") or ""
    try:
        _, document = open_config(request)
    except Unreadable as exc:
        return await _page(request, session, section, error=str(exc), status_code=409)
    stored = _object_value(document, section)
    try:
        value = forms.parse_form(
            section.model, data, stored, base_path=section.path, fields=section.fields
        )
    except forms.FormErrors as exc:
        return await _page(
            request,
            session,
            section,
            value=exc.value,
            stored=stored,
            version=version,
            issues=[(_full(section, n), m) for n, m in forms.form_error_issues(exc)],
            error="Not saved: some text could not be read; see the marked fields.",
            status_code=400,
        )
    additions = forms.requested_additions(data.all(":add"))
    if additions:  # "add an item": show the form again with an empty item, nothing saved
        return await _page(
            request, session, section, value=value, stored=stored, version=version, add=additions
        )

    def edit(doc: Document) -> None:
        if section.fields is not None:
            for key in section.fields:
                if key in value:
                    doc.set((key,), value[key])
                else:
                    doc.delete((key,))
        elif value:
            doc.set(section.path, value)
        else:
            doc.delete(section.path)

    try:
        saved = await save_edit(
            request,
            edit,
            version=version,
            summary=f"settings {section.key}",
            object=f"settings.{section.key}",
        )
    except EditRefused as refused:
        # After a conflict the form keeps the version it was opened with: saving it again is
        # refused again, so nobody puts a whole section over a change they have not seen.
        return await _page(
            request, session, section, value=value, stored=stored, version=version, refused=refused
        )
    changes = "; ".join(saved.changes[:8]) or "nothing changed"
    restart = _restart_needed(section, saved.changes)
    text = f"{section.title} saved: {changes}."
    if restart:
        text += " " + restart
    return redirect_with(request, _section_url(request, section), text)


def _full(section: Section, name: str) -> str:
    return ".".join((*section.path, name)) if section.path else name


def _restart_needed(section: Section, changes: list[str]) -> str:
    """What the saved change needs to take effect, when that is a restart."""
    prefix = ".".join(section.path)
    notes = []
    for change in changes:
        path = change.split(":", 1)[0].split(" ", 1)[0]
        relative = path[len(prefix) + 1 :] if prefix else path
        bare = relative.split("[", 1)[0]
        note = section.restart.get(bare)
        if note and "restart" in note.lower() and note not in notes:
            notes.append(f"{bare}: {note}")
    return " ".join(notes)
