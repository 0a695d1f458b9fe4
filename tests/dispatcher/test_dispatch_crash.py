"""Crash safety: a dispatcher killed mid-send resumes and re-sends only unconfirmed instances."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from dispatch_site import Site

from mercure.core.datafolder import Stage
from mercure.dispatcher.progress import PROGRESS_FILE
from mercure.testing.peers import StoreSCP
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until


def start_dispatcher(site: Site) -> subprocess.Popen[bytes]:
    """``mercure dispatcher`` in a child process."""
    command = [sys.executable, "-m", "mercure", "dispatcher", "--config", str(site.config_path)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def journal_lines(path: Path) -> list[str]:
    """Complete lines of the progress journal (file names)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line)["file"] for line in lines]


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.parametrize("associations", [1, 4])
def test_sigkill_mid_send_resumes_without_resending_confirmed(
    site: Site,
    storescp: Callable[..., StoreSCP],
    series_cache: object,
    tmp_path: Path,
    associations: int,
) -> None:
    """SIGKILL during a 500-instance send over one or four associations (threads); after a
    restart the task completes and storescp got each confirmed instance once (at most the one
    in flight on each association twice)."""
    series: GeneratedSeries = series_cache.get("tiny", 500)  # type: ignore[attr-defined]
    scp = storescp(extra_args=["-v"], fork=associations > 1)
    target = {
        "type": "dicom",
        "host": "127.0.0.1",
        "port": scp.port,
        "aet_target": scp.ae_title,
        "parallel_associations": associations,
    }
    site.configure({"pacs": target})
    task_id = site.add_task(series.paths, ["pacs"])
    journal = site.data.stage(Stage.OUTGOING) / task_id / PROGRESS_FILE
    first = start_dispatcher(site)
    try:
        wait_until(lambda: len(journal_lines(journal)) >= 100, timeout=30, message="100 sent")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    confirmed_before = journal_lines(journal)
    assert 100 <= len(confirmed_before) < 500, "the kill must hit the middle of the send"
    second = start_dispatcher(site)
    try:
        wait_until(lambda: site.where(task_id) == Stage.SUCCESS, timeout=60, message="delivered")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    final = journal_lines(site.data.stage(Stage.SUCCESS) / task_id / PROGRESS_FILE)
    assert sorted(final) == sorted(p.name for p in series.paths)
    assert not [name for name, n in Counter(final).items() if n > 1]
    assert scp.sop_instance_uids() == series.sop_instance_uids
    scp.stop()  # flushes its log
    received = scp.log_path.read_text().count("Received Store Request")
    assert 500 <= received <= 500 + associations, f"storescp received {received} C-STOREs"
    status = site.task_json(task_id)["dispatch"]["status"]["pacs"]
    assert status["state"] == "complete"
    assert status["instances_sent"] == 500


KILLED_AFTER_FINAL_MOVE = """
import os, signal, sys
import mercure.core.task as core_task
import mercure.dispatcher.engine as engine

original = core_task.move_task

def move_then_die(task_dir, data, stage):
    destination = original(task_dir, data, stage)
    if stage.value in ("success", "error"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed right after the final move
    return destination

core_task.move_task = engine.move_task = move_then_die
from mercure.cli.main import main
sys.exit(main(["dispatcher", "--config", sys.argv[1]]))
"""


@pytest.mark.parametrize(
    ("outcome", "kind"), [("success", "task.completed"), ("error", "task.failed")]
)
def test_task_moved_on_then_killed_still_reports_its_outcome(
    site: Site, tmp_path: Path, outcome: str, kind: str
) -> None:
    """A dispatcher killed the moment a task reached success/ or error/ has already told the
    bookkeeper (its outbox holds the outcome): nothing would report it after a restart, since
    the task is no longer in outgoing/."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    folder = tmp_path / "archive"
    if outcome == "error":
        folder.write_text("a file where the target folder should be")
    site.configure({"archive": {"type": "folder", "folder": str(folder)}}, retry_attempts=1)
    task_id = site.add_task(series.paths, ["archive"])
    command = [sys.executable, "-c", KILLED_AFTER_FINAL_MOVE, str(site.config_path)]
    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as dispatcher:
        try:
            assert dispatcher.wait(60) == -signal.SIGKILL
        finally:
            dispatcher.kill()
    assert site.where(task_id) == Stage(outcome)

    # A restarted dispatcher finds nothing to do in outgoing/: the outcome must be on record.
    site.dispatch_until(lambda: True, timeout=5)
    reported = [e for e in site.events("task.") if e["task_id"] == task_id]
    assert kind in [e["kind"] for e in reported], [e["kind"] for e in reported]
    (last,) = [e for e in reported if e["kind"] == kind]
    assert last["stage"] == outcome
