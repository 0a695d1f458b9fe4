"""Linux inotify through ctypes: file-system notifications read in batches on the event loop.

The router watches incoming/ with it; workers wake on new tasks in their stage with it
(:meth:`mercure.core.service.Service.wake_on_arrivals`).

Why our own ~100 lines rather than watchdog or asyncinotify: the router needs one non-blocking
descriptor it can hand to ``loop.add_reader`` and drain in one ``read`` per wake-up (a busy
receiver causes thousands of events a second), exact control over each watch (one per series
folder, removed the moment the folder is claimed), and to see ``ENOSPC`` when the kernel's watch
limit is reached so that it can fall back to its rescan. watchdog runs a thread per observer and
hides the watch descriptors; asyncinotify would do, but adds a dependency for what is four libc
calls and one struct.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from dataclasses import dataclass

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000

_IN_CLOEXEC = os.O_CLOEXEC
_IN_NONBLOCK = os.O_NONBLOCK
_HEADER = struct.Struct("iIII")
_READ_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One notification: the watch it belongs to, what happened, and the entry name (if any)."""

    wd: int
    mask: int
    cookie: int
    name: str


class Inotify:
    """One inotify instance: add and remove watches, read pending events without blocking."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._libc.inotify_rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = self._libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd: int | None = fd

    def fileno(self) -> int:
        """The descriptor to wait on (readable when events are pending)."""
        if self._fd is None:
            raise ValueError("inotify instance is closed")
        return self._fd

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """Watch ``path`` for ``mask``; the watch descriptor. Raises OSError (ENOSPC: limit)."""
        wd: int = self._libc.inotify_add_watch(self.fileno(), os.fsencode(path), mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
        return wd

    def remove_watch(self, wd: int) -> None:
        """Stop a watch; a watch the kernel already dropped (folder deleted) is fine."""
        if self._libc.inotify_rm_watch(self.fileno(), wd) < 0:
            code = ctypes.get_errno()
            if code != errno.EINVAL:
                raise OSError(code, f"inotify_rm_watch: {os.strerror(code)}")

    def read_events(self) -> list[InotifyEvent]:
        """Every event pending now (an empty list if there is none); never blocks."""
        events: list[InotifyEvent] = []
        while True:
            try:
                buffer = os.read(self.fileno(), _READ_SIZE)
            except BlockingIOError:
                return events
            if not buffer:
                return events
            offset = 0
            while offset + _HEADER.size <= len(buffer):
                wd, mask, cookie, length = _HEADER.unpack_from(buffer, offset)
                offset += _HEADER.size
                raw = buffer[offset : offset + length].rstrip(b"\0")
                offset += length
                events.append(InotifyEvent(wd, mask, cookie, os.fsdecode(raw)))

    def close(self) -> None:
        """Release the instance and all its watches."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
