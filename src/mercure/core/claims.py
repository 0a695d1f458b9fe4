"""Claims: a service's exclusive right to work on a task folder, held by a kernel lock.

A claim is an ``flock`` on the task folder itself. The kernel drops it when the holder exits,
however it exits (SIGKILL included), so no stale claim can outlive its process and no recovery
pass is needed for the lock. The folder may be renamed to another stage while claimed (the lock
is on the inode), which lets a service move a task and finish writing it before the next stage's
service can take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from mercure.core.errors import ClaimError


class Claim:
    """An exclusive, process-bound claim on a folder. Use :meth:`try_take` to get one."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def try_take(cls, folder: Path | str) -> Claim | None:
        """Claim ``folder``; None if another process holds it or it is gone (already moved)."""
        path = Path(folder)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # Between open and flock another process may have finished and moved the folder;
        # the claim is only good if the name still leads to the inode we locked.
        try:
            still_here = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            still_here = False
        if not still_here:
            os.close(fd)
            return None
        return cls(path, fd)

    @classmethod
    def take(cls, folder: Path | str) -> Claim:
        """Claim ``folder`` or raise :class:`ClaimError`."""
        claim = cls.try_take(folder)
        if claim is None:
            raise ClaimError(f"{folder} is claimed by another process or no longer exists")
        return claim

    @staticmethod
    def is_claimed(folder: Path | str) -> bool:
        """Whether some process holds a claim on ``folder`` right now."""
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def moved_to(self, new_path: Path) -> None:
        """Tell the claim its folder was renamed (the lock follows the inode)."""
        self.path = new_path

    @property
    def held(self) -> bool:
        """Whether this claim is still held."""
        return self._fd is not None

    def release(self) -> None:
        """Give the claim up (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
