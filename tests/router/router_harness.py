"""The router tests' harness: a router in this process on a movable clock, and helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mercure.core.config import LoadedConfig, load_config
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import Event, Outbox, read_segment
from mercure.core.heartbeat import read_heartbeats
from mercure.core.task import Task, read_task
from mercure.router.router import Router
from mercure.router.simulate import IncomingWriter
from mercure.testing.ports import free_port
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

BASE_CONFIG = """
data_dir: data
router:
  series_complete_trigger: 60
  rescan_interval: 600
targets:
  pacs: {type: dicom, host: 127.0.0.1, port: 104}
  archive: {type: dicom, host: 127.0.0.1, port: 105}
  research: {type: folder, folder: /tmp}
modules:
  anon: {runner: command, command: [/bin/true], settings: {mode: strict, keep: {dates: false}}}
  seg: {runner: command, command: [/bin/true]}
"""


class FakeClock:
    """Wall-clock time plus an offset that tests move forward (never back)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.offset += seconds


@dataclass
class Harness:
    """A router driven by hand: send series, move time, look at the stages and events."""

    root: Path
    config_path: Path
    loaded: LoadedConfig
    data: DataFolder
    router: Router
    clock: FakeClock
    writer: IncomingWriter
    outbox: Outbox
    _numbers: Iterator[int]

    def series(self, count: int = 3, **kwargs: Any) -> GeneratedSeries:
        """A new tiny series (seeded uniquely unless ``seed`` is given)."""
        number = next(self._numbers)
        kwargs.setdefault("seed", number)
        return generate_series(self.root / f"gen{number}", "tiny", count, **kwargs)

    def send(self, series: GeneratedSeries, **overrides: Any) -> GeneratedSeries:
        """Deliver a series in one association and tell the router, as inotify would."""
        self.writer.send(series, **overrides)
        self.notify(series.series_uid)
        return series

    def notify(self, series_uid: str) -> None:
        """What inotify reports after instances and a release arrived in a series folder."""
        self.router.on_series_created(series_uid)
        self.router.on_instance(series_uid)
        self.router.on_tags(series_uid)
        self.router.on_journal(series_uid)

    def run(self) -> None:
        """Let the router do everything that is due now."""
        while self.router.run_due():
            pass

    def advance(self, seconds: float) -> None:
        """Move time forward and run."""
        self.clock.advance(seconds)
        self.run()

    def tasks(self, stage: Stage | str) -> list[Path]:
        """Task folders in a stage."""
        return self.data.entries(stage)

    def task(self, path: Path) -> Task:
        """The task.json of a task folder."""
        return read_task(path)

    def only_task(self, stage: Stage | str) -> tuple[Path, Task]:
        """The one task of a stage (fails if there are more or none)."""
        tasks = self.tasks(stage)
        assert len(tasks) == 1, f"{stage}: {[t.name for t in tasks]}"
        return tasks[0], read_task(tasks[0])

    def events(self, kind: str | None = None) -> list[Event]:
        """Events written so far (of one kind)."""
        found: list[Event] = []
        for path in sorted(self.outbox.folder.iterdir()):
            if path.suffix in (".open", ".jsonl"):
                found.extend(read_segment(path))
        return [e for e in found if kind is None or e.kind == kind]

    def reconfigure(self, extra: str) -> None:
        """Replace the configuration (BASE_CONFIG plus ``extra``) in the running router."""
        self.config_path.write_text(BASE_CONFIG + extra)
        self.loaded = load_config(self.config_path)
        self.router.set_config(self.loaded)

    def incoming_left(self) -> list[str]:
        """Everything still in incoming/ apart from the receiver's staging folder."""
        incoming = self.data.stage(Stage.INCOMING)
        left = [n for n in os.listdir(incoming) if n != ".receiving" and n != ".routing"]
        left += [f".routing/{n}" for n in os.listdir(incoming / ".routing")]
        return left


def dicom_names(folder: Path) -> set[str]:
    """The instance files of a task folder."""
    return {name for name in os.listdir(folder) if name.endswith(".dcm")}


def sop_files(series: GeneratedSeries) -> set[str]:
    """The file names a series' instances have in incoming/ and in tasks."""
    return {f"{uid}.dcm" for uid in series.sop_instance_uids}


class RouterProcess:
    """``mercure router`` in a child process, as it runs in production."""

    def __init__(self, config_path: Path, data: DataFolder, instance: str = "t") -> None:
        self.config_path = config_path
        self.data = data
        self.instance = instance
        self.process: subprocess.Popen[bytes] | None = None
        self.log = config_path.with_name("router.log")

    def start(self, *, wait: bool = True) -> RouterProcess:
        """Start it; with ``wait``, return once its heartbeat says running."""
        command = [
            sys.executable,
            "-m",
            "mercure",
            "router",
            "--config",
            str(self.config_path),
            "--instance",
            self.instance,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Wait until the process reports itself running."""
        process = self.process
        assert process is not None

        def running() -> bool:
            assert process.poll() is None, self.log.read_text()
            return any(
                beat.pid == process.pid and beat.state == "running"
                for beat in read_heartbeats(self.data.run_dir)
            )

        wait_until(running, timeout=30, message="router running")

    def kill(self) -> None:
        """SIGKILL: the hardest way to stop."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def __enter__(self) -> RouterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def service_config(root: Path, extra: str, *, trigger: float = 0.3) -> tuple[Path, DataFolder]:
    """A configuration for a router process: short quiet time, no rescan to lean on."""
    config_path = root / "mercure.yaml"
    config_path.write_text(
        BASE_CONFIG.replace("series_complete_trigger: 60", f"series_complete_trigger: {trigger}")
        + f"""
supervisor: {{heartbeat_interval: 0.2}}
bookkeeper: {{port: {free_port()}}}
"""
        + extra
    )
    data = DataFolder(root / "data")
    data.ensure()
    return config_path, data
