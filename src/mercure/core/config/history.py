"""Saving the configuration: validated, atomic, and with every previous version kept.

Previous versions live beside the file in ``<name>.history/`` as
``<UTC time>-<name>``, newest last, so an administrator (or the web interface) can see what
changed and roll back. Saves made through :func:`replace_file` (the web interface's) also append
a line to ``<name>.history/.changes.jsonl``: when, who, the summary and the changes, and the
archived version it replaced. A save holds ``<name>.history/.lock`` (an ``flock``, released when
the process ends, however it ends) from reading the current version to the rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mercure.core.atomic import atomic_write_bytes, atomic_write_text
from mercure.core.config.loader import LoadedConfig, parse_document, validate_document

if TYPE_CHECKING:
    from mercure.core.config.editing import Describe, SavedConfig

DEFAULT_KEEP = 100
CHANGES_FILE = ".changes.jsonl"
LOCK_FILE = ".lock"
MAX_LOG_LINES = 2000


def history_dir(path: Path) -> Path:
    """The folder that keeps previous versions of ``path``."""
    return path.with_name(path.name + ".history")


def save_config(path: Path | str, text: str, *, keep: int = DEFAULT_KEEP) -> LoadedConfig:
    """Validate ``text`` and, if valid, replace the file atomically after archiving the old one.

    Raises :class:`~mercure.core.errors.ConfigError` (and changes nothing) when invalid. A save
    by a program on behalf of the local user; the web interface uses
    :func:`mercure.core.config.editing.save_text`, which also refuses a stale edit.
    """
    from mercure.core.config.editing import save_text

    user = f"{getpass.getuser()} (command line)"
    return save_text(Path(path), text, expected_version=None, user=user, keep=keep).loaded


def replace_file(
    path: Path,
    text: str,
    *,
    expected_version: str | None,
    user: str,
    summary: str,
    describe: Describe,
    restored_from: str | None = None,
    environ: Mapping[str, str] | None = None,
    keep: int = DEFAULT_KEEP,
) -> SavedConfig:
    """The body of :func:`mercure.core.config.editing.save_text` (see there), under the lock."""
    from mercure.core.config.editing import ConfigChanged, SavedConfig, version_of

    raw = parse_document(text, str(path))
    archive = history_dir(path)
    archive.mkdir(mode=0o700, exist_ok=True)
    with _locked(archive):
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            current = None
        if expected_version is not None and version_of(current or b"") != expected_version:
            raise ConfigChanged(
                f"{path.name} was changed since you opened it{_last_change(archive)}; nothing "
                "was saved. Open it again to see the change, then make yours."
            )
        loaded = validate_document(
            raw, source=str(path), base_dir=path.resolve().parent, environ=environ
        )
        changes = describe((current or b"").decode("utf-8", "replace"), loaded)
        previous = None
        stamp = datetime.now(UTC)
        if current is not None:
            previous = f"{stamp.strftime('%Y%m%dT%H%M%S.%fZ')}-{path.name}"
            atomic_write_bytes(archive / previous, current, mode=0o600)  # may hold secrets
            _prune(archive, keep)
        data = text.encode("utf-8")
        atomic_write_bytes(path, data, mode=_mode_of(path))
        version = version_of(data)
        record = {
            "time": stamp.isoformat(),
            "user": user,
            "summary": summary,
            "changes": changes,
            "previous": previous,
            "version": version,
        }
        if restored_from:
            record["restored_from"] = restored_from
        _append_change(archive, record)
    return SavedConfig(loaded=loaded, version=version, changes=changes, previous=previous)


def _mode_of(path: Path) -> int:
    """The file's own permissions, or owner-only for a new file (it may hold secrets)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return 0o600


@dataclass(frozen=True)
class ChangeRecord:
    """One save recorded in the history: who, when, what (secrets never in it)."""

    time: datetime
    user: str
    summary: str
    changes: list[str]
    previous: str | None
    """The archived version this save replaced."""
    version: str
    restored_from: str | None = None


def list_changes(path: Path | str) -> list[ChangeRecord]:
    """The recorded saves of the file, oldest first (saves by hand are not recorded)."""
    log = history_dir(Path(path)) / CHANGES_FILE
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            entry = json.loads(line)
            records.append(
                ChangeRecord(
                    time=datetime.fromisoformat(entry["time"]),
                    user=str(entry["user"]),
                    summary=str(entry.get("summary", "")),
                    changes=[str(c) for c in entry.get("changes", [])],
                    previous=entry.get("previous"),
                    version=str(entry.get("version", "")),
                    restored_from=entry.get("restored_from"),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: the versions themselves are intact
    return records


@contextlib.contextmanager
def _locked(archive: Path) -> Iterator[None]:
    fd = os.open(archive / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _last_change(archive: Path) -> str:
    records = list_changes(archive.parent / archive.name.removesuffix(".history"))
    if not records:
        return ""
    last = records[-1]
    return f" (last saved by {last.user} at {last.time.strftime('%Y-%m-%d %H:%M:%S UTC')})"


def _append_change(archive: Path, record: Mapping[str, object]) -> None:
    log = archive / CHANGES_FILE
    line = json.dumps(record, ensure_ascii=False) + "\n"
    try:
        lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    if len(lines) >= MAX_LOG_LINES:
        atomic_write_text(log, "".join(lines[-(MAX_LOG_LINES // 2) :]) + line)
        return
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def list_versions(path: Path | str) -> list[Path]:
    """Previous versions of the file, oldest first."""
    archive = history_dir(Path(path))
    if not archive.is_dir():
        return []
    return sorted(p for p in archive.iterdir() if not p.name.startswith("."))


def restore_version(path: Path | str, version: Path | str) -> LoadedConfig:
    """Make an archived version current again (the current one is archived first)."""
    path = Path(path)
    source = history_dir(path) / Path(version).name
    return save_config(path, source.read_text(encoding="utf-8"))


def version_path(path: Path | str, name: str) -> Path:
    """The archived version called ``name`` (a name from :func:`list_versions`, nothing else).

    Raises :class:`FileNotFoundError` for any other name, a path or ``..`` included.
    """
    names = {p.name: p for p in list_versions(path)}
    if name not in names:
        raise FileNotFoundError(f"no archived version {name!r}")
    return names[name]


def _prune(archive: Path, keep: int) -> None:
    versions = sorted(p for p in archive.iterdir() if not p.name.startswith("."))
    for old in versions[: max(0, len(versions) - keep)]:
        os.unlink(old)
