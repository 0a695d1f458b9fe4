"""A cleaner killed mid-delete leaves nothing half visible, and the next start finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cleaner_helpers import (
    make_task,
    outbox_events,
    running_cleaner,
    window_closed_now,
    write_config,
)

from mercure.cleaner.removal import DELETING_PREFIX
from mercure.core.datafolder import DataFolder, Stage

HARNESS = Path(__file__).with_name("crashing_cleaner.py")


def test_kill_mid_delete_hides_the_task_and_the_next_start_finishes_it(
    data: DataFolder, tmp_path: Path
) -> None:
    """SIGKILL during the delete: the task is already out of sight; a restart removes the rest."""
    make_task(data, Stage.SUCCESS, "big", size=20 * 1024, files=20)
    with subprocess.Popen(
        [sys.executable, str(HARNESS), str(data.root)], stdout=subprocess.PIPE, text=True
    ) as crashing:
        assert crashing.stdout is not None
        assert crashing.stdout.readline() == "half-deleted\n"
        os.kill(crashing.pid, signal.SIGKILL)
        crashing.wait()
    hidden = data.stage(Stage.SUCCESS) / f"{DELETING_PREFIX}big"
    assert data.entries(Stage.SUCCESS) == []
    assert 0 < len(list(hidden.iterdir())) < 21
    # The removal was reported before the files went: the event is in the dead one's outbox.
    assert [event.task_id for event in outbox_events(data, "task.cleaned")] == ["big"]

    # The next start finishes the removal at once, even outside the cleaning window.
    config = write_config(tmp_path, data, window=window_closed_now())
    with running_cleaner(config, data) as cleaner:
        cleaner.wait_for(lambda: not hidden.exists())
    assert os.listdir(data.stage(Stage.SUCCESS)) == []
