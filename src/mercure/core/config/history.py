"""Saving the configuration: validated, atomic, and with every previous version kept.

Previous versions live beside the file in ``<name>.history/`` as
``<UTC time>-<name>``, newest last, so an administrator (or the web interface) can see what
changed and roll back.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from mercure.core.atomic import atomic_write_bytes, atomic_write_text
from mercure.core.config.loader import LoadedConfig, parse_document, validate_document

DEFAULT_KEEP = 100


def history_dir(path: Path) -> Path:
    """The folder that keeps previous versions of ``path``."""
    return path.with_name(path.name + ".history")


def save_config(path: Path | str, text: str, *, keep: int = DEFAULT_KEEP) -> LoadedConfig:
    """Validate ``text`` and, if valid, replace the file atomically after archiving the old one.

    Raises :class:`~mercure.core.errors.ConfigError` (and changes nothing) when invalid.
    """
    path = Path(path)
    raw = parse_document(text, str(path))
    loaded = validate_document(raw, source=str(path), base_dir=path.resolve().parent)
    if path.exists():
        archive = history_dir(path)
        archive.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        atomic_write_bytes(archive / f"{stamp}-{path.name}", path.read_bytes())
        _prune(archive, keep)
    atomic_write_text(path, text)
    return loaded


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


def _prune(archive: Path, keep: int) -> None:
    versions = sorted(p for p in archive.iterdir() if not p.name.startswith("."))
    for old in versions[: max(0, len(versions) - keep)]:
        os.unlink(old)
