"""Per-target sending slots shared by every process on every host (scale-out).

A target's ``max_parallel_tasks`` is a total: four associations to the PACS means four in all,
however many workers send. Each slot is a file ``run/slots/<target>/<n>`` in the shared data
folder, held with an ``fcntl`` lock (``flock``; on NFS v4 Linux maps it to a lock the server
keeps). The kernel, or the NFS server's lease, drops the lock when its holder dies, so a
killed worker frees its slot without any recovery pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

POLL_INTERVAL = 0.05
"""Seconds between looks for a free slot (flock cannot wait asynchronously)."""


def _try_slot(folder: Path, size: int) -> int | None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(size):
        fd = os.open(folder / str(number), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd
    return None


@contextlib.asynccontextmanager
async def target_slot(run_dir: Path, target: str, size: int) -> AsyncIterator[int]:
    """Wait for one of the ``size`` slots of ``target``; yields its number, frees it after."""
    folder = run_dir / "slots" / target
    while (fd := _try_slot(folder, size)) is None:
        await asyncio.sleep(POLL_INTERVAL)
    try:
        yield fd
    finally:
        os.close(fd)


def busy_slots(run_dir: Path, target: str, size: int) -> int:
    """How many of the target's slots are held right now (tests and ``mercure status``)."""
    folder = run_dir / "slots" / target
    busy = 0
    for number in range(size):
        try:
            fd = os.open(folder / str(number), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            busy += 1
        finally:
            os.close(fd)
    return busy
