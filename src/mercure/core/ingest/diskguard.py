"""The free-disk floor: the receiver stops taking data before the data folder's file system
falls below ``receiver.min_free_disk_mb``.

``statvfs`` is read at most every ``interval`` seconds; between two readings every byte the
receiver is about to write is subtracted from the last reading. A fast sender therefore cannot
run past the floor between two looks: a write that would cross it triggers a fresh reading,
and if that confirms it, the instance is refused with Out of Resources (0xA700) and its partial
file removed. The floor holds to within one write of each open association (at most one PDU),
plus what other processes write between two readings. Once it has refused, the receiver takes
new instances again only when free space is back above the floor by a tenth of it: a refused
instance's partial file, removed, would otherwise make room for the next one to start and be
refused in turn.

What is left below the floor is the headroom of everything else on that file system: the
bookkeeper's database, the event outboxes, journals, task files (see docs/operations.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from mercure.dicomnet.dimse import OUT_OF_RESOURCES
from mercure.dicomnet.errors import StoreRefused
from mercure.dicomnet.handler import StoreSink

FreeSpace = Callable[[str], int]
"""Bytes free for unprivileged users on the file system holding a path."""

INSTANCE_OVERHEAD = 16384
"""Bytes charged per instance besides its dataset: File Meta, the journal line and the
rounding of the file to whole blocks."""


def statvfs_free(path: str) -> int:
    """Free bytes for unprivileged users (``f_bavail``), from ``statvfs``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskGuard:
    """Is there room above the floor? Answered from the last ``statvfs`` reading minus the
    bytes charged since; shared by every listener of a receiver process. ``on_full`` is called
    each time the receiver starts refusing."""

    def __init__(
        self,
        path: str,
        floor_bytes: int,
        *,
        interval: float = 0.25,
        free_space: FreeSpace = statvfs_free,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.floor_bytes = floor_bytes
        self.interval = interval
        self._free_space = free_space
        self._measured_at = float("-inf")
        self.free = 0
        """Free bytes at the last reading."""
        self.charged = 0
        """Bytes written (or about to be) since the last reading."""
        self._full = False
        self._on_full = on_full

    @property
    def full(self) -> bool:
        """True from a refusal until free space is back above the floor plus a tenth."""
        return self._full

    def _set_full(self, full: bool) -> None:
        if full and not self._full and self._on_full is not None:
            self._on_full()
        self._full = full

    def _measure(self) -> None:
        self.free = self._free_space(self.path)
        self.charged = 0
        self._measured_at = time.monotonic()

    def admit(self) -> bool:
        """Whether one more instance may start; charges its overhead when it may."""
        needed = self.floor_bytes + INSTANCE_OVERHEAD
        if self._full:
            needed += self.floor_bytes // 10
        if (
            time.monotonic() - self._measured_at >= self.interval
            or self.free - self.charged < needed
        ):
            self._measure()
        self._set_full(self.free - self.charged < needed)
        if self._full:
            return False
        self.charged += INSTANCE_OVERHEAD
        return True

    def refuse_write(self, nbytes: int) -> None:
        """Called when ``nbytes`` more would cross the floor by the estimate: read the free
        space again, and raise Out of Resources if the write really would cross it."""
        self._measure()
        if self.free - nbytes < self.floor_bytes:
            self._set_full(True)
            raise StoreRefused(
                OUT_OF_RESOURCES, "free disk space reached the configured floor while receiving"
            )
        self.charged = nbytes

    def guard(self, sink: StoreSink) -> GuardedSink:
        """``sink`` with each write charged against the floor before it is made."""
        return GuardedSink(self, sink)


class GuardedSink:
    """A store sink whose writes are charged to a :class:`DiskGuard` first."""

    __slots__ = ("_guard", "_sink", "_write")

    def __init__(self, guard: DiskGuard, sink: StoreSink) -> None:
        self._guard = guard
        self._sink = sink
        self._write = sink.write

    def write(self, chunk: memoryview) -> None:
        """Charge the chunk, then write it (or refuse the instance at the floor)."""
        guard = self._guard
        size = len(chunk)
        # Inlined rather than a method of the guard: this runs for every PDV fragment.
        guard.charged += size
        if guard.free - guard.charged < guard.floor_bytes:
            guard.refuse_write(size)
        self._write(chunk)

    def finish(self) -> int | Awaitable[int]:
        """The wrapped sink's answer."""
        return self._sink.finish()

    def abort(self) -> None:
        """Let the wrapped sink remove its partial file."""
        self._sink.abort()
