"""Removing an entry of a finished stage so that it is never half visible, and never claimed.

A removal is two steps:

1. **hide**: take the task's claim (a task someone else has claimed is skipped, whatever its
   age), then rename the folder to ``.deleting-<name>`` in the same stage and fsync the stage.
   Names starting with a dot are ignored by every scanner, so from this instant the task is gone
   for everyone, atomically;
2. **delete**: remove the hidden folder's files, still holding the claim.

A crash between or during the steps leaves at most a hidden ``.deleting-<name>`` folder, which
:func:`finish_leftovers` removes at the next start (and on every pass).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from mercure.core.atomic import fsync_dir
from mercure.core.claims import Claim
from mercure.core.datafolder import DELETING_PREFIX

log = logging.getLogger(__name__)


DeleteTree = Callable[[Path], None]
"""Removes a folder and everything in it (``shutil.rmtree`` unless a test needs otherwise)."""


def hidden_name(path: Path) -> Path:
    """Where ``path`` goes while it is being deleted."""
    return path.with_name(DELETING_PREFIX + path.name)


class Hidden:
    """An entry renamed out of sight and, if it is a folder, still claimed by us."""

    def __init__(self, original: Path, path: Path, claim: Claim | None) -> None:
        self.original = original
        self.path = path
        self._claim = claim

    def delete(self, delete_tree: DeleteTree = shutil.rmtree) -> None:
        """Remove the hidden entry, then give up the claim (even when the removal fails)."""
        try:
            _delete(self.path, delete_tree)
        finally:
            self.release()

    def release(self) -> None:
        """Give up the claim without deleting (the leftover is finished later)."""
        if self._claim is not None:
            self._claim.release()
            self._claim = None


def hide(path: Path, delete_tree: DeleteTree = shutil.rmtree) -> Hidden | None:
    """Claim ``path`` and rename it to its hidden name; None if it is claimed or gone.

    A stray file (not a folder) has no claim and is simply renamed.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    claim = Claim.try_take(path) if stat.S_ISDIR(mode) else None
    if stat.S_ISDIR(mode) and claim is None:
        return None
    target = hidden_name(path)
    try:
        # An earlier removal of a task with this name may have left its hidden folder behind;
        # if another process is still deleting it, this task waits for a later pass.
        busy = os.path.lexists(target) and not _finish(target, delete_tree)
        if not busy:
            os.rename(path, target)
            fsync_dir(path.parent)
    except FileNotFoundError:
        busy = True  # a stray file someone else removed meanwhile
    except BaseException:
        if claim is not None:
            claim.release()
        raise
    if busy:
        if claim is not None:
            claim.release()
        return None
    if claim is not None:
        claim.moved_to(target)
    return Hidden(path, target, claim)


def leftovers(stage_dir: Path) -> list[Path]:
    """Hidden ``.deleting-*`` entries of a stage folder: removals a crash interrupted."""
    try:
        names = os.listdir(stage_dir)
    except FileNotFoundError:
        return []
    return [stage_dir / name for name in sorted(names) if name.startswith(DELETING_PREFIX)]


def finish_leftovers(stage_dir: Path, delete_tree: DeleteTree = shutil.rmtree) -> list[Path]:
    """Finish interrupted removals in a stage folder; the leftovers that are now gone.

    A leftover that another cleaner process is deleting right now (it holds the claim) is left
    to it. A leftover that cannot be deleted is logged and retried on the next call.
    """
    finished = []
    for path in leftovers(stage_dir):
        try:
            done = _finish(path, delete_tree)
        except OSError as exc:
            log.warning("cannot finish removing %s (will retry): %s", path, exc)
            continue
        if done:
            finished.append(path)
    return finished


def _finish(path: Path, delete_tree: DeleteTree) -> bool:
    """Delete a hidden leftover unless another process holds its claim; whether it is gone."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(mode):
        _delete(path, delete_tree)
        return True
    claim = Claim.try_take(path)
    if claim is None:
        return not os.path.lexists(path)
    with claim:
        _delete(path, delete_tree)
    return True


def _delete(path: Path, delete_tree: DeleteTree) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        delete_tree(path)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
    fsync_dir(path.parent)
