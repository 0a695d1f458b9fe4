"""Atomic file writes: nothing another process reads is ever seen half-written.

The pattern is Maildir's: write a temporary name in the same folder (readers skip names that
start with a dot), flush and fsync, then ``os.replace`` onto the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


def temp_name_for(path: Path) -> Path:
    """A unique temporary name beside ``path``; scanners ignore it because it starts with a dot."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")


def atomic_write_bytes(
    path: Path | str, data: bytes, *, fsync: bool = True, mode: int = 0o644
) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    tmp = temp_name_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_text(
    path: Path | str, text: str, *, fsync: bool = True, mode: int = 0o644
) -> None:
    """Write UTF-8 ``text`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync, mode=mode)


def atomic_write_json(path: Path | str, value: Any, *, fsync: bool = True) -> None:
    """Write ``value`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n", fsync=fsync)


def fsync_dir(folder: Path | str) -> None:
    """Make a rename or file creation in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
