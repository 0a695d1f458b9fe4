"""How full the data filesystem is: the probe behind the cleaner's disk-pressure relief.

Usage is computed as ``df`` shows it: used blocks over the blocks an unprivileged writer could
have (used + available), so space reserved for root counts as unavailable. The probe is a plain
callable so that tests and the dry run can substitute their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DiskUsage:
    """Bytes used out of the bytes usable on a filesystem."""

    used: int
    total: int

    @property
    def percent(self) -> float:
        """Used share of the usable bytes, 0-100 (as ``df`` prints it)."""
        if self.total <= 0:
            return 100.0
        return 100.0 * self.used / self.total

    def minus(self, freed: int) -> DiskUsage:
        """The usage after ``freed`` bytes were released."""
        return DiskUsage(used=max(0, self.used - freed), total=self.total)


UsageProbe = Callable[[], DiskUsage]
"""Anything that reports the current usage of the data filesystem."""


def statvfs_usage(path: Path | str) -> DiskUsage:
    """The usage of the filesystem holding ``path``."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    available = st.f_bavail * st.f_frsize
    return DiskUsage(used=used, total=used + available)


def statvfs_probe(path: Path | str) -> UsageProbe:
    """A probe that asks the kernel (``statvfs``) about the filesystem holding ``path``."""
    return lambda: statvfs_usage(path)
