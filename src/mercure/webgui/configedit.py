"""Changing the configuration from the web interface: one way for every page.

A page reads the file with :func:`current_config` and puts its version in the form
(``config_version``). On submit it calls :func:`save_edit` with a function that changes the
round-trip document. ``save_edit`` re-reads the file and refuses when it changed since the form
was opened ("changed since you opened it": another administrator or a hand edit), validates the
result with the models of ``check-config``, saves it atomically keeping the previous version,
records who saved what in the history and the audit log, and makes the web interface follow the
new configuration at once. The other services reload the file by themselves (docs/webgui.md
says which settings need a restart).

The raw configuration page saves a whole text (:func:`save_whole_text`: masked secrets put
back) and restores archived versions (:func:`restore_archived`); every kind of save goes
through the same steps (``_save``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from mercure.core.config.editing import (
    MASK,
    ConfigChanged,
    ConfigFile,
    Document,
    SavedConfig,
    save_text,
    unmask,
)
from mercure.core.config.history import version_path
from mercure.core.config.loader import LoadedConfig, parse_document, validate_document
from mercure.core.errors import ConfigError
from mercure.core.masking import register_config
from mercure.webgui.audit import audit
from mercure.webgui.context import web_context
from mercure.webgui.flash import redirect_with
from mercure.webgui.rendering import render

Edit = Callable[[Document], None]
"""Changes a document in place (raises :class:`EditRefused` to refuse with a reason)."""


class EditRefused(Exception):
    """A change that was not saved, and why.

    ``issues`` are (key path, message) pairs from the validation, for showing beside the
    fields; ``conflict`` is true when the file changed since the form was opened.
    """

    def __init__(
        self,
        message: str,
        issues: list[tuple[str, str]] | None = None,
        *,
        conflict: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or []
        self.conflict = conflict


@dataclass(frozen=True)
class SavedEdit:
    """A saved change: the new version and what changed."""

    version: str
    changes: list[str] = field(default_factory=list)
    loaded: LoadedConfig | None = None


def config_path_of(request: Request) -> str:
    """The configuration file of this web interface; refused when it has none."""
    path = web_context(request).config_path
    if path is None:
        raise EditRefused(
            "this web interface was started without a configuration file: nothing can be saved"
        )
    return str(path)


def current_config(request: Request) -> tuple[ConfigFile, Document]:
    """The configuration file as it is now, and its round-trip document."""
    file = ConfigFile.read(config_path_of(request))
    return file, Document(file.text, str(file.path))


class Unreadable(Exception):
    """mercure.yaml cannot be read as a document now (a hand edit broke its syntax, or this
    web interface has no configuration file)."""


def open_config(request: Request) -> tuple[ConfigFile, Document]:
    """:func:`current_config`, or :class:`Unreadable` saying why not: what every edit page
    reads before showing or saving a form."""
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


async def save_then_redirect(
    request: Request,
    edit: Edit,
    *,
    version: str,
    summary: str,
    object: str,
    saved: tuple[str, str],
    refused: tuple[str, str],
) -> Response:
    """:func:`save_edit` for a button (disable, delete): a redirect with a flash either way.

    ``saved`` is (where to, message) after the save; ``refused`` is (where to, message
    beginning) when it was refused, the reason appended."""
    try:
        await save_edit(request, edit, version=version, summary=summary, object=object)
    except EditRefused as exc:
        where, message = refused
        return redirect_with(request, where, f"{message}{exc.message}", "bad")
    return redirect_with(request, *saved)


def refusal(refused: EditRefused, unplaced: list[str]) -> tuple[str, int]:
    """What a form page says about a refused save, and its status; ``unplaced``: the issues
    that are at no control of the form (:func:`mercure.webgui.forms.place_issues`)."""
    if refused.conflict:
        return (
            f"Not saved: {refused.message} Your input is kept below: open the page again in "
            "another tab to see the other change, then make yours.",
            409,
        )
    if refused.issues:
        placed = len(refused.issues) - len(unplaced)
        parts = [f"{placed} problem{'s' if placed != 1 else ''} shown at the fields"] * bool(placed)
        return "Not saved: " + "; ".join([*parts, *unplaced]) + ".", 400
    return "Not saved: " + refused.message.removeprefix("the change was not saved: "), 400


async def save_edit(
    request: Request,
    edit: Edit,
    *,
    version: str,
    summary: str,
    object: str | None = None,
) -> SavedEdit:
    """Apply ``edit`` to the file as it is now and save it, if it is still ``version``.

    Raises :class:`EditRefused` when the file changed since (``conflict``), when ``edit``
    refuses, or when the result is invalid (``issues``); nothing is written then.
    """

    def produce(file: ConfigFile) -> str:
        document = Document(file.text, str(file.path))
        edit(document)
        return document.dump()

    return await _save(request, produce, version=version, summary=summary, object=object)


async def save_whole_text(
    request: Request,
    text: str,
    *,
    version: str,
    summary: str = "edited the whole file",
) -> SavedEdit:
    """Make ``text`` (as the raw configuration page shows it: secrets masked) the file's text.

    Where ``text`` still says :data:`~mercure.core.config.editing.MASK` for a secret, the
    stored secret is put back (:func:`~mercure.core.config.editing.unmask`); a mask with
    nothing stored behind it is refused with its key path. Otherwise as :func:`save_edit`.
    """

    def produce(file: ConfigFile) -> str:
        return unmasked_text(text, file)

    return await _save(request, produce, version=version, summary=summary)


async def restore_archived(request: Request, name: str, *, version: str) -> SavedEdit:
    """Make the archived version ``name`` current again, if the file is still ``version``.

    Validated like any save (a version that no longer validates, e.g. because an environment
    variable is missing now, is refused with its issues); recorded with ``restored_from`` and
    audited as ``config.restore``. ``name`` must be one of :func:`list_versions`' names
    (:class:`FileNotFoundError` otherwise).
    """
    source = version_path(config_path_of(request), name)

    def produce(file: ConfigFile) -> str:
        return source.read_text(encoding="utf-8")

    return await _save(
        request,
        produce,
        version=version,
        summary=f"restored the version {name}",
        restored_from=name,
        action="config.restore",
        object=name,
    )


def unmasked_text(text: str, file: ConfigFile) -> str:
    """``text`` with its masks put back from ``file`` (``text`` unchanged when it has none).

    Raises :class:`ConfigError` for a syntax error (with line and column) or a mask that
    stands for nothing.
    """
    source = str(file.path)
    parse_document(text, source)  # the services' parser: its syntax errors name line and column
    document = Document(text, source)
    if not any(document.get(path) == MASK for path in document.secret_paths()):
        return text  # byte for byte what the admin wrote
    unmask(document, Document(file.text, source))
    return document.dump()


async def _save(
    request: Request,
    produce: Callable[[ConfigFile], str],
    *,
    version: str,
    summary: str,
    object: str | None = None,
    restored_from: str | None = None,
    action: str = "config.save",
) -> SavedEdit:
    """The one way every save goes: ``produce`` makes the new text from the file as it is now;
    it is saved if the file is still ``version`` and valid, then applied and audited."""
    path = config_path_of(request)
    session = getattr(request.state, "session", None)
    user = session.user if session is not None else "anonymous"

    def produce_and_save() -> SavedConfig:
        file = ConfigFile.read(path)  # save_text refuses it if it is not `version` any more
        return save_text(
            file.path,
            produce(file),
            expected_version=version,
            user=user,
            summary=summary,
            restored_from=restored_from,
        )

    try:
        saved = await asyncio.to_thread(produce_and_save)
    except ConfigChanged as exc:
        raise EditRefused(str(exc), conflict=True) from None
    except ConfigError as exc:
        issues = [(issue.path, issue.message) for issue in exc.issues]
        raise EditRefused("the change was not saved: " + _first(issues), issues) from None
    # This process masks the new configuration's secrets from now on, and follows it at once.
    register_config(saved.loaded.config, saved.loaded.module_environment_secrets)
    web_context(request).apply(saved.loaded.config)
    detail = "; ".join(saved.changes[:5]) or "no change"
    extra = {"restored_from": restored_from} if restored_from else {}
    audit(
        request,
        action,
        object,
        f"{summary}: {detail}" if summary else detail,
        changes=saved.changes,
        version=saved.version,
        **extra,
    )
    return SavedEdit(version=saved.version, changes=saved.changes, loaded=saved.loaded)


def check_document(request: Request, document: Document) -> list[tuple[str, str]]:
    """The issues ``check-config`` would report for ``document`` (nothing is saved)."""
    path = config_path_of(request)
    try:
        validate_document(document.plain(), source=path, base_dir=Path(path).resolve().parent)
    except ConfigError as exc:
        return [(issue.path, issue.message) for issue in exc.issues]
    return []


def check_text(request: Request, text: str) -> list[tuple[str, str]]:
    """The issues a save of ``text`` (masks and all) would be refused for; nothing is saved.

    The same steps as :func:`save_whole_text` short of writing: syntax (line and column),
    masks standing for nothing, then the validation of ``check-config``.
    """
    path = config_path_of(request)
    try:
        whole = unmasked_text(text, ConfigFile.read(path))
        validate_document(
            parse_document(whole, path), source=path, base_dir=Path(path).resolve().parent
        )
    except ConfigError as exc:
        return [(issue.path, issue.message) for issue in exc.issues]
    return []


def _first(issues: list[tuple[str, str]]) -> str:
    if not issues:
        return "it is not valid"
    path, message = issues[0]
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return (f"{path}: {message}" if path else message) + more
