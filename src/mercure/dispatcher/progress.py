"""Per-instance delivery progress: an append-only journal in the task folder.

``task.json`` holds the per-target summary and is replaced atomically at the start and end of
every attempt. Rewriting it for every confirmed instance would cost an fsync'd file per
instance, so per-instance confirmations go to ``dispatch-progress.jsonl`` instead: one JSON line
per instance and target, appended with a single ``write`` (``O_APPEND``), e.g.
``{"target": "pacs", "file": "1.2.3.dcm", "bytes": 526010, "time": 1764280000.1}``.

A reader skips a torn last line (no newline yet), so a crash loses at most the confirmation of
the instance being recorded, and that instance is simply sent again: delivery is at-least-once.
The journal is not fsynced per line; it survives a crash of the process (the page cache is
the kernel's), and after a power loss the instances it lost are re-sent.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

PROGRESS_FILE = "dispatch-progress.jsonl"


class ProgressJournal:
    """Appends confirmations for one task folder and reads back what each target confirmed."""

    def __init__(self, task_dir: Path) -> None:
        self.task_dir = task_dir
        self._lock = threading.Lock()
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        """The journal file."""
        return self.task_dir / PROGRESS_FILE

    def confirmed(self) -> dict[str, dict[str, int]]:
        """Confirmed instances per target: ``{target: {file name: bytes}}``."""
        result: dict[str, dict[str, int]] = defaultdict(dict)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        for line in data.split(b"\n")[:-1]:  # the part after the last newline is torn
            try:
                record = json.loads(line)
                result[record["target"]][record["file"]] = int(record.get("bytes", 0))
            except (ValueError, KeyError, TypeError):
                continue
        return dict(result)

    def record(self, target: str, file: Path, size: int) -> None:
        """Append one confirmation; thread-safe (plug-ins may confirm from worker threads)."""
        # Formatted by hand: this runs once per instance, json.dumps of a dict costs more.
        line = (
            f'{{"target": {json.dumps(target)}, "file": {json.dumps(file.name)}, '
            f'"bytes": {int(size)}, "time": {time.time():.3f}}}'
        )
        with self._lock:
            if self._fd is None:
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        """Close the journal file (the folder may then move)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
