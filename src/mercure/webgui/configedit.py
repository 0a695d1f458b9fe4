"""Changing the configuration from the web interface: one way for every page.

A page reads the file with :func:`current_config` and puts its version in the form
(``config_version``). On submit it calls :func:`save_edit` with a function that changes the
round-trip document. ``save_edit`` re-reads the file and refuses when it changed since the form
was opened ("changed since you opened it": another administrator or a hand edit), validates the
result with the models of ``check-config``, saves it atomically keeping the previous version,
records who saved what in the history and the audit log, and makes the web interface follow the
new configuration at once. The other services reload the file by themselves (docs/webgui.md
says which settings need a restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from mercure.core.config.editing import (
    ConfigChanged,
    ConfigFile,
    Document,
    SavedConfig,
    save_text,
)
from mercure.core.config.loader import LoadedConfig, validate_document
from mercure.core.errors import ConfigError
from mercure.core.masking import register_config
from mercure.webgui.audit import audit
from mercure.webgui.context import web_context

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
    path = config_path_of(request)
    session = getattr(request.state, "session", None)
    user = session.user if session is not None else "anonymous"

    def apply_and_save() -> SavedConfig:
        file = ConfigFile.read(path)  # save_text refuses it if it is not `version` any more
        document = Document(file.text, str(file.path))
        edit(document)
        return save_text(
            file.path, document.dump(), expected_version=version, user=user, summary=summary
        )

    try:
        saved = await asyncio.to_thread(apply_and_save)
    except ConfigChanged as exc:
        raise EditRefused(str(exc), conflict=True) from None
    except ConfigError as exc:
        issues = [(issue.path, issue.message) for issue in exc.issues]
        raise EditRefused("the change was not saved: " + _first(issues), issues) from None
    # This process masks the new configuration's secrets from now on, and follows it at once.
    register_config(saved.loaded.config, saved.loaded.module_environment_secrets)
    web_context(request).apply(saved.loaded.config)
    detail = "; ".join(saved.changes[:5]) or "no change"
    audit(
        request,
        "config.save",
        object,
        f"{summary}: {detail}" if summary else detail,
        changes=saved.changes,
        version=saved.version,
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


def _first(issues: list[tuple[str, str]]) -> str:
    if not issues:
        return "it is not valid"
    path, message = issues[0]
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return (f"{path}: {message}" if path else message) + more
