"""Helpers of the cleaner's tests: task folders with distinct ages, clocks, events, claims."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from mercure.cleaner.cleaner import Clock
from mercure.cleaner.diskusage import DiskUsage, UsageProbe
from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import Event, EventClient, Outbox, read_segment
from mercure.core.task import Task, TaskInfo, write_task
from mercure.testing.wait import wait_until

HOLDER = """
import sys, signal
from mercure.core.claims import Claim
claim = Claim.take(sys.argv[1])
print("claimed", flush=True)
signal.pause()
"""


def make_task(data: DataFolder, stage: Stage, name: str, *, size: int = 0, files: int = 1) -> Path:
    """A task folder with task.json and ``files`` files of ``size`` bytes in all.

    Returns once the kernel clock has moved past the folder's ctime, so tasks made one after
    another have distinct ages (the kernel stamps ctimes with a clock of a few ms resolution).
    """
    folder = data.stage(stage) / name
    folder.mkdir()
    write_task(folder, Task(id=name, info=TaskInfo(action="route", uid=f"1.2.826.0.1.{len(name)}")))
    for number in range(files):
        share = size // files + (size % files if number == 0 else 0)
        (folder / f"{number:04d}.dcm").write_bytes(b"\0" * share)
    ctime = max(os.stat(folder).st_ctime, os.stat(folder / "task.json").st_ctime)
    wait_until(lambda: time.time() > ctime + 0.011, timeout=2)
    return folder


@dataclass(frozen=True)
class SmallFilesystem:
    """A 4 MiB filesystem for disk-pressure tests and the probe that measures it."""

    root: Path
    probe: UsageProbe
    kind: str


def full_disk() -> DiskUsage:
    """A probe reporting 99 % of 100 TiB, for tests about what may go rather than measuring."""
    return DiskUsage(used=99 << 40, total=100 << 40)


def config_for(data: DataFolder, **sections: Any) -> MercureConfig:
    """A configuration for ``data`` with the given top-level sections (e.g. ``cleaner={...}``)."""
    return MercureConfig.model_validate({"data_dir": str(data.root), **sections})


def clock_at(offset: float = 0.0, hour: int | None = None) -> Clock:
    """A clock stopped at now + ``offset`` seconds, local time, at ``hour``:00 if given."""
    moment = datetime.now().astimezone() + timedelta(seconds=offset)
    if hour is not None:
        moment = moment.replace(hour=hour, minute=0, second=0, microsecond=0)
    return lambda: moment


def window_around_now() -> dict[str, str]:
    """A cleaning window (local time) that is open now: from an hour ago to an hour ahead."""
    now = datetime.now()
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    return {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}


def window_closed_now() -> dict[str, str]:
    """A cleaning window (local time) that is closed now: it opens in six hours."""
    now = datetime.now()
    start, end = now + timedelta(hours=6), now + timedelta(hours=8)
    return {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}


class EventLog:
    """A real event outbox in the data folder, and a way to read back what went into it."""

    def __init__(self, data: DataFolder, name: str = "cleaner@test") -> None:
        self.outbox = Outbox(data.outbox_dir, name)
        self.client = EventClient(self.outbox, "cleaner", "test")

    def events(self, kind: str | None = None) -> list[Event]:
        """Every event written so far (of ``kind``, if given)."""
        self.outbox.seal()
        found = [e for segment in self.outbox.sealed_segments() for e in read_segment(segment)]
        return [e for e in found if kind is None or e.kind == kind]

    def close(self) -> None:
        """Seal and release the outbox."""
        self.outbox.close()


def outbox_events(data: DataFolder, kind: str) -> list[Event]:
    """Events of ``kind`` in every outbox of the data folder, sealed or left open by a crash."""
    found: list[Event] = []
    for segment in sorted(data.outbox_dir.glob("*/*")):
        if segment.suffix in (".jsonl", ".open"):
            found.extend(e for e in read_segment(segment) if e.kind == kind)
    return found


@contextlib.contextmanager
def claimed_by_another_process(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the claim on ``folder`` until the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "claimed\n"
            yield holder
        finally:
            holder.kill()


def write_config(tmp_path: Path, data: DataFolder, **cleaner: object) -> Path:
    """A mercure.yaml for ``data`` with fast passes and the given cleaner settings."""
    path = tmp_path / "mercure.yaml"
    document = {
        "data_dir": str(data.root),
        "cleaner": {"interval": 0.2, "disk_threshold_percent": 100, **cleaner},
        "supervisor": {"heartbeat_interval": 0.2},
        # No bookkeeper here (port 9 refuses): events stay in the outboxes for the tests to read.
        "bookkeeper": {"url": "http://127.0.0.1:9"},
    }
    path.write_text(yaml.safe_dump(document))
    return path


class RunningCleaner:
    """A cleaner service process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def wait_for(self, condition: Callable[[], object], timeout: float = 20) -> None:
        """Wait until ``condition`` holds; fail early if the service died."""
        wait_until(lambda: condition() or self.process.poll() is not None, timeout=timeout)
        assert self.process.poll() is None, f"the cleaner exited with {self.process.returncode}"

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


@contextlib.contextmanager
def running_cleaner(config: Path, data: DataFolder) -> Iterator[RunningCleaner]:
    """Start ``mercure cleaner`` in a child process; stopped with SIGTERM at the end."""
    command = [sys.executable, "-m", "mercure", "cleaner", "--config", str(config)]
    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as process:
        running = RunningCleaner(process)
        try:
            yield running
            assert running.stop() == 0
        finally:
            if process.poll() is None:
                process.kill()
