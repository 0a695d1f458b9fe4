"""Retained tasks: the finished tasks the cleaner may remove, when each entered its stage, sizes.

What "age" means
----------------
A task's age is the time since it **entered its stage**, and that moment is read from the
kernel's change time (``st_ctime``) of the task folder, and of its ``task.json`` if that is newer:

- Tasks reach ``success/``, ``discard/`` and ``error/`` by one ``rename`` of their folder
  (:func:`mercure.core.task.move_task`). On Linux, ext4, XFS, btrfs and tmpfs set the renamed
  folder's ctime to the time of the rename, while its mtime stays as it was (a rename changes the
  parent folders' entries, not the task folder's). So the folder's ctime is the time the task
  arrived, with no extra bookkeeping in the services that move tasks.
- Anything written into the folder later (a late ``error.json``, a replaced ``task.json``) moves
  the ctime forward, so the age counts from the task's last change: the safe direction.
- mtimes are not used: copies keep them (``cp -p``, ``rsync -a``, modalities' own files) and any
  program can set them to any value, whereas only the kernel sets a ctime, to the current time.

Consequences an administrator should know: changing the folder's permissions or owner, or
copying the data folder to a new disk, restarts every task's age (retention is then late, never
early). On a filesystem that does not touch the ctime on rename (some network filesystems), the
age counts from the task's last write, which the finishing service does just before its move.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.task import TASK_FILE

FINISHED_STAGES = (Stage.SUCCESS, Stage.DISCARD, Stage.ERROR)
"""The only stages the cleaner ever looks into."""


@dataclass(frozen=True)
class Retained:
    """A visible entry (normally a task folder) of a finished stage."""

    stage: Stage
    path: Path
    entered_at: float
    """When it entered the stage, seconds since the epoch (see the module docstring)."""

    @property
    def name(self) -> str:
        """The folder name, which is the task id."""
        return self.path.name

    def age(self, now: float) -> float:
        """Seconds in the stage at ``now`` (seconds since the epoch)."""
        return now - self.entered_at


def entered_stage_at(path: Path) -> float:
    """When the entry at ``path`` entered its stage: the newest ctime of it and its task.json."""
    st = os.lstat(path)
    newest = st.st_ctime
    if stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            newest = max(newest, os.lstat(path / TASK_FILE).st_ctime)
    return newest


def scan_retained(data: DataFolder) -> list[Retained]:
    """Every visible entry of success/, discard/ and error/, with the time it got there."""
    found = []
    for stage in FINISHED_STAGES:
        for path in data.entries(stage):
            try:
                found.append(Retained(stage, path, entered_stage_at(path)))
            except FileNotFoundError:
                continue  # moved or removed by someone else since the listing
    return found


@dataclass(frozen=True)
class TaskSize:
    """How big an entry is: its files' bytes, and what removing it would give back to the disk."""

    bytes: int
    """Sum of the sizes of its files."""
    freeable: int
    """Allocated bytes of the files whose every hard link is inside the entry."""


def measure(path: Path) -> TaskSize:
    """Walk ``path`` and add up its size; files hard-linked from elsewhere free nothing."""
    total = 0
    allocated: dict[tuple[int, int], tuple[int, int]] = {}
    seen_links: dict[tuple[int, int], int] = {}
    directories = 0
    stack = [path]
    try:
        root = os.lstat(path)
    except FileNotFoundError:
        return TaskSize(0, 0)
    if not stat.S_ISDIR(root.st_mode):
        return TaskSize(root.st_size, root.st_blocks * 512 if root.st_nlink == 1 else 0)
    directories += root.st_blocks * 512
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                directories += st.st_blocks * 512
                stack.append(Path(entry.path))
                continue
            key = (st.st_dev, st.st_ino)
            if key not in allocated:
                total += st.st_size
                allocated[key] = (st.st_blocks * 512, st.st_nlink)
            seen_links[key] = seen_links.get(key, 0) + 1
    freeable = directories + sum(
        blocks for key, (blocks, links) in allocated.items() if seen_links[key] >= links
    )
    return TaskSize(total, freeable)
