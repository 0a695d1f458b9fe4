"""Fixtures of the cleaner's tests: a data folder, an event log, a small filesystem."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cleaner_helpers import EventLog, SmallFilesystem

from mercure.cleaner.diskusage import DiskUsage, UsageProbe, statvfs_probe
from mercure.core.datafolder import DataFolder

SMALL_FS_BYTES = 4 << 20


@pytest.fixture
def data(tmp_path: Path) -> DataFolder:
    """An empty data folder with every stage."""
    folder = DataFolder(tmp_path / "data")
    folder.ensure()
    return folder


@pytest.fixture
def event_log(data: DataFolder) -> Iterator[EventLog]:
    """A real outbox in ``data`` for the cleaner under test."""
    log = EventLog(data)
    yield log
    log.close()


@functools.cache
def can_mount_tmpfs() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, outside most sandboxes)."""
    mount_point = tempfile.mkdtemp(prefix="mercure-tmpfs-check-")
    try:
        mounted = _mount(Path(mount_point), 1 << 20)
        if mounted:
            _umount(Path(mount_point))
        return mounted
    finally:
        os.rmdir(mount_point)


def _mount(mount_point: Path, size: int) -> bool:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _umount(mount_point: Path) -> None:
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=True)


def folder_probe(root: Path, capacity: int) -> UsageProbe:
    """Injected usage probe: blocks allocated below ``root`` out of a nominal ``capacity``.

    Only for machines where no tmpfs can be mounted.
    """

    def probe() -> DiskUsage:
        used = 0
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                used += os.lstat(os.path.join(folder, name)).st_blocks * 512
        return DiskUsage(used=used, total=capacity)

    return probe


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Name the kind of small filesystem in the test id: a real tmpfs, or the injected probe."""
    if "small_fs" in metafunc.fixturenames:
        kind = "tmpfs" if can_mount_tmpfs() else "injected-probe"
        metafunc.parametrize("small_fs", [kind], indirect=True, ids=[kind])


@pytest.fixture
def small_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallFilesystem]:
    """A real size-limited tmpfs where mounting works, else a folder with an injected probe."""
    root = tmp_path / "small-fs"
    root.mkdir()
    if request.param == "tmpfs":
        assert _mount(root, SMALL_FS_BYTES), "mounting a tmpfs worked a moment ago"
        try:
            yield SmallFilesystem(root, statvfs_probe(root), "tmpfs")
        finally:
            _umount(root)
    else:
        yield SmallFilesystem(root, folder_probe(root, SMALL_FS_BYTES), "injected-probe")
