"""DiskGuard's accounting with a fake free-space source (runs where no small file system can be
mounted; test_disk_floor.py shows the same on a real tmpfs)."""

from __future__ import annotations

import pytest

from mercure.core.ingest.diskguard import INSTANCE_OVERHEAD, DiskGuard
from mercure.dicomnet.dimse import OUT_OF_RESOURCES, SUCCESS
from mercure.dicomnet.errors import StoreRefused

MIB = 1 << 20


class FakeDisk:
    """A fake file system: a byte counter whose free space drops as sinks write. It stands in
    for statvfs (``free_space``) and for the files (``sink``)."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.readings = 0

    def free_space(self, path: str) -> int:
        self.readings += 1
        return self.free

    def sink(self) -> FakeSink:
        return FakeSink(self)


class FakeSink:
    """A store sink writing to a :class:`FakeDisk`; abort gives the bytes back."""

    def __init__(self, disk: FakeDisk) -> None:
        self.disk = disk
        self.size = 0

    def write(self, chunk: memoryview) -> None:
        self.disk.free -= len(chunk)
        self.size += len(chunk)

    def finish(self) -> int:
        return SUCCESS

    def abort(self) -> None:
        self.disk.free += self.size
        self.size = 0


def send(guard: DiskGuard, disk: FakeDisk, size: int, chunk: int = 16384) -> bool:
    """One instance through the guard as the acceptor drives it; True when stored."""
    if not guard.admit():
        return False
    sink = guard.guard(disk.sink())
    data = memoryview(bytes(chunk))
    try:
        for _ in range(size // chunk):
            sink.write(data)
    except StoreRefused as refused:
        assert refused.status == OUT_OF_RESOURCES
        sink.abort()
        return False
    return sink.finish() == SUCCESS


def test_writes_between_readings_cannot_cross_the_floor() -> None:
    """With a reading interval longer than the whole run, free space still never goes below
    the floor: each write is charged against the last reading before it is made."""
    disk = FakeDisk(free=100 * MIB)
    guard = DiskGuard("/fake", 20 * MIB, interval=3600, free_space=disk.free_space)
    lowest = disk.free
    stored = 0
    readings_until_full = 0
    for _ in range(200):
        if send(guard, disk, MIB):
            stored += 1
        elif not readings_until_full:
            readings_until_full = disk.readings
        lowest = min(lowest, disk.free)
    assert lowest >= 20 * MIB
    assert stored == 80  # exactly what fits above the floor
    assert readings_until_full < 10  # no reading per instance while far from the floor


def test_after_a_refusal_instances_wait_for_a_tenth_above_the_floor() -> None:
    """An instance refused mid-way frees its bytes; the next one is not started until free
    space is a tenth of the floor above it, and then it is, and on_full fired once."""
    reports: list[str] = []
    disk = FakeDisk(free=10 * MIB + MIB // 2)
    guard = DiskGuard(
        "/fake", 10 * MIB, interval=3600, free_space=disk.free_space,
        on_full=lambda: reports.append("full"),
    )  # fmt: skip
    assert not send(guard, disk, MIB)  # refused mid-way at the floor
    assert guard.full and disk.free == 10 * MIB + MIB // 2
    assert not guard.admit() and not guard.admit()
    assert reports == ["full"]
    disk.free = 11 * MIB + INSTANCE_OVERHEAD  # the cleaner made room
    assert guard.admit() and not guard.full


@pytest.mark.parametrize("floor_mb", [0, 1])
def test_a_disk_far_from_the_floor_admits_everything(floor_mb: int) -> None:
    """No refusal while free space is far above the floor."""
    disk = FakeDisk(free=1 << 40)
    guard = DiskGuard("/fake", floor_mb * MIB, free_space=disk.free_space)
    assert all(send(guard, disk, 4 * MIB) for _ in range(20))
