"""The receiver's temporary area: ``incoming/.receiving/<instance>-<pid>/``.

Datasets are streamed into files here and renamed into their series folder once complete, so a
half-received instance is never visible in ``incoming/<series>/``. Each receiver process owns
its own folder under an exclusive ``flock``; at start-up, folders whose lock can be taken belong
to dead processes and are removed (nothing in them was ever acknowledged).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

STAGING_DIR = ".receiving"


class Staging:
    """This process's staging folder, and the recovery of dead processes' folders."""

    def __init__(self, incoming: Path, instance: str) -> None:
        self.root = incoming / STAGING_DIR
        self.root.mkdir(exist_ok=True)
        self.folder = self.root / f"{instance}-{os.getpid()}"
        # Receiver processes starting together (receiver.processes) take turns here: between
        # one's mkdir and its flock, another's recovery would see an unlocked folder and
        # remove it. The lock is the kernel's, so it dies with a process killed meanwhile.
        guard = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)
            self.removed_stale = self._remove_stale()
            self._fd = self._make_folder()
        finally:
            os.close(guard)
        self._counter = 0

    def _make_folder(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd

    def recreate(self) -> None:
        """Make this process's folder again after it was removed from outside."""
        log.warning("staging folder %s was removed from outside; recreating it", self.folder)
        os.close(self._fd)
        self._fd = self._make_folder()

    def _remove_stale(self) -> int:
        removed = 0
        for entry in os.scandir(self.root):
            if not entry.is_dir(follow_symlinks=False):
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live receiver's folder
            finally:
                os.close(fd)
            partial = len(os.listdir(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += partial
            if partial:
                log.warning(
                    "removed %d unacknowledged partial instance(s) left by a stopped receiver",
                    partial,
                )
        return removed

    def new_path(self) -> str:
        """A fresh temporary file name in this process's folder."""
        self._counter += 1
        return f"{self.folder}/{self._counter}.part"

    def close(self) -> None:
        """Remove this process's folder (it is empty once every association ended)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self._fd)
