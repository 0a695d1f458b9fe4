"""A cleaner that stops half-way through deleting a task, to be killed there (run as a script).

It runs one real pass over the data folder given as argument (success retention 0, window
ignored), with a delete function that removes half of the task's files, prints ``half-deleted``
and waits for the signal that kills it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from mercure.cleaner.cleaner import Cleaner
from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder
from mercure.core.events import EventClient, Outbox


def delete_half_then_hang(folder: Path) -> None:
    """Remove half of the files below ``folder``, report, then wait to be killed."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in files[: len(files) // 2]:
        os.unlink(path)
    print("half-deleted", flush=True)
    signal.pause()


if __name__ == "__main__":
    data = DataFolder(sys.argv[1])
    config = MercureConfig.model_validate(
        {"data_dir": str(data.root), "cleaner": {"success_retention": 0}}
    )
    events = EventClient(Outbox(data.outbox_dir, "cleaner@crashing"), "cleaner", "crashing")
    Cleaner(data, events, delete_tree=delete_half_then_hang).run_pass(config, ignore_window=True)
