"""The free-disk floor holds against a fast sender: on a small real file system (tmpfs), free
space never drops below ``min_free_disk_mb`` by more than one instance, the senders get Out of
Resources for the rest, and the event outbox on the same disk keeps working."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mercure.core.events import read_segment
from mercure.testing.peers import storescu
from mercure.testing.receiver import RunningReceiver
from mercure.testing.series import generate_series

pytestmark = pytest.mark.peers

FILESYSTEM_MB = 64
FLOOR_MB = 16


@pytest.fixture
def small_data_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs mounted where the receiver fixtures put the data folder (needs root)."""
    mount_point = tmp_path / "data"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM_MB}m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def free_bytes(path: Path) -> int:
    """Free space for unprivileged users, as the receiver reads it."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class FreeSpaceWatch:
    """Samples free space of a file system on a thread as fast as it can; keeps the lowest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lowest = free_bytes(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.lowest = min(self.lowest, free_bytes(self.path))

    def stop(self) -> int:
        """Stop sampling; the lowest free space seen."""
        self._stop.set()
        self._thread.join()
        return min(self.lowest, free_bytes(self.path))


def test_fast_sender_cannot_fill_the_disk_past_the_floor(
    small_data_filesystem: Path,
    receiver_factory: Callable[..., RunningReceiver],
    tmp_path: Path,
) -> None:
    """60 instances of 1 MiB into 48 MB above the floor: free space stays above the floor minus
    one instance, the rest is refused with Out of Resources, every acknowledged instance is
    kept, and the disk-full event still reaches the outbox on the full disk."""
    series = generate_series(tmp_path / "in", kind="ct", count=60, size=(1024, 512))
    instance_bytes = max(path.stat().st_size for path in series.paths)
    receiver = receiver_factory(receiver={"min_free_disk_mb": FLOOR_MB})
    watch = FreeSpaceWatch(small_data_filesystem)
    result = storescu(
        receiver.port, series.folder, called_aet="MERCURE", extra_args=["-v"], check=False
    )
    lowest = watch.stop()
    floor = FLOOR_MB << 20
    print(
        f"lowest free {lowest / 2**20:.2f} MiB, floor {FLOOR_MB} MiB, instance {instance_bytes} B"
    )
    assert lowest >= floor - instance_bytes
    acknowledged = (result.stdout + result.stderr).count("Received Store Response (Success)")
    refused = (result.stdout + result.stderr).count("OutOfResources")
    assert acknowledged >= 20 and refused >= 1
    assert len(receiver.instances()) == acknowledged
    assert receiver.staging_files() == []
    assert receiver.stop() == 0
    kinds = [
        event.kind
        for outbox in receiver.data.outbox_dir.iterdir()
        for segment in sorted(outbox.glob("*.jsonl"))
        for event in read_segment(segment)
    ]
    assert "receiver.disk_full" in kinds and "association.closed" in kinds
