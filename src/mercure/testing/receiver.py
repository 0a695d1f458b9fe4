"""A real `mercure receiver` process for tests and bench/ (started like `mercure run` would)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mercure.core.datafolder import DataFolder, Stage
from mercure.dicomnet.filemeta import read_file_meta
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until


@dataclass
class RunningReceiver:
    """A receiver process with its configuration and data folder."""

    config_path: Path
    data: DataFolder
    port: int
    aet: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _log_offset: int = 0

    def start(self) -> RunningReceiver:
        """Start the process and wait until it listens."""
        self._log_offset = len(self.log_text())
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mercure", "receiver", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._listening, timeout=60, message=f"receiver listening ({self.log_text()})")
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"receiver exited early:\n{self.log_text()}")
        # Each receiver process logs "listener <name>: <aet> on port <port>" once it listens.
        started = self.log_text()[self._log_offset :].count(f": {self.aet} on port {self.port}")
        return started >= self.processes

    @property
    def processes(self) -> int:
        """How many receiver processes listen (receiver.processes; ``auto`` counts as one)."""
        config = yaml.safe_load(self.config_path.read_text())
        value = config.get("receiver", {}).get("processes", 1)
        return value if isinstance(value, int) else 1

    def log_text(self) -> str:
        """What the receiver logged so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the process with ``sig``; its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(30)
        self.process = None
        return code

    def series_folders(self) -> list[Path]:
        """Series folders in incoming/."""
        return self.data.entries(Stage.INCOMING)

    def instances(self) -> list[Path]:
        """Every .dcm file in incoming/."""
        return sorted(self.data.stage(Stage.INCOMING).glob("*/*.dcm"))

    def staging_files(self) -> list[Path]:
        """Temporary files of any receiver process."""
        return sorted(self.data.stage(Stage.INCOMING).glob(".receiving/*/*"))


def receiver_config(
    data_dir: Path,
    port: int | None = None,
    *,
    listener: dict[str, Any] | None = None,
    receiver: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A configuration document with one listener (AE title MERCURE) on a free port."""
    return {
        "data_dir": str(data_dir),
        "receiver": {
            "listeners": [
                {
                    "name": "default",
                    "port": port or free_port(),
                    "aet": "MERCURE",
                    **(listener or {}),
                }
            ],
            "min_free_disk_mb": 1,
            # One process unless a test asks for more: tests that kill "the receiver" mean it.
            "processes": 1,
            **(receiver or {}),
        },
        "supervisor": {"stop_timeout": 5},
        **(extra or {}),
    }


def start_receiver(config: dict[str, Any], config_path: Path) -> RunningReceiver:
    """Write ``config`` to ``config_path`` and start a receiver on it."""
    config_path.write_text(yaml.safe_dump(config))
    listener = config["receiver"]["listeners"][0]
    running = RunningReceiver(
        config_path,
        DataFolder(config["data_dir"]),
        listener["port"],
        listener["aet"],
        config_path.with_suffix(".log"),
    )
    return running.start()


def run_receiver_to_exit(
    config: dict[str, Any], config_path: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Write ``config`` and run a receiver on it until it exits by itself (a receiver that
    cannot start); its exit code and output."""
    config_path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "mercure", "receiver", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta group."""
    meta = read_file_meta(path)
    return path.read_bytes()[meta.dataset_offset :]
