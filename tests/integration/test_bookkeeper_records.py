"""What the bookkeeper records under `mercure run`, compared with the data folder: instances the
receiver rejected are error tasks with their reason, and series tasks carry their study UID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mercure.core.datafolder import DataFolder, Stage
from mercure.testing.installation import BookkeeperClient, MercureProcess, write_config
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[tuple[int, DataFolder, BookkeeperClient]]:
    """`mercure run` routing every series to a folder target; (receiver port, data folder,
    bookkeeper client)."""
    receiver_port, bookkeeper_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        targets={"archive": {"type": "folder", "folder": str(tmp_path / "archive")}},
        rules={"all": {"rule": "True", "action": "route", "targets": ["archive"]}},
    )
    mercure = MercureProcess(
        "run",
        config,
        listen_port=receiver_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    client = BookkeeperClient(bookkeeper_port)
    with mercure:
        yield receiver_port, DataFolder(tmp_path / "data"), client
        assert mercure.shutdown() == 0, mercure.log_text()
    client.close()


def _with_series_uid(path: Path, old: str, new: str) -> None:
    # pydicom refuses to write an invalid UID; patch one of the same length into the bytes.
    raw = path.read_bytes()
    path.write_bytes(raw.replace(old.encode(), new.ljust(len(old), "x").encode()))


def test_rejected_instances_are_error_tasks_with_their_reason(
    installation: tuple[int, DataFolder, BookkeeperClient], tmp_path: Path
) -> None:
    """An instance without a SeriesInstanceUID and one whose UID names the receiver's staging
    folder (".receiving...") end in error/; the bookkeeper shows both as errors of stage
    "receive" with the reason, without the unsafe UID as their series, and counts them as
    the data folder does."""
    port, data, bookkeeper = installation
    missing = generate_series(
        tmp_path / "missing", kind="tiny", count=1, tags={"SeriesInstanceUID": None}
    )
    unsafe = generate_series(tmp_path / "unsafe", kind="tiny", count=1)
    _with_series_uid(unsafe.paths[0], unsafe.series_uid, ".receiving")
    for series in (missing, unsafe):
        storescu(port, series.folder, called_aet="MERCURE", check=False)
    wait_until(lambda: len(data.entries(Stage.ERROR)) == 2, timeout=20)

    errors = wait_until(
        lambda: (found := bookkeeper.tasks(state="error")) and len(found) == 2 and found,
        timeout=20,
        message="both rejected instances are errors in the bookkeeper",
    )
    assert {task["task_id"] for task in errors} == {p.name for p in data.entries(Stage.ERROR)}
    reasons = sorted(task["fail_reason"] for task in errors)
    assert "SeriesInstanceUID is missing" in reasons[0] + reasons[1]
    assert "is not a safe file name" in reasons[0] + reasons[1]
    assert all(task["fail_stage"] == "receive" for task in errors)
    assert all(task["series_uid"] is None for task in errors)
    queues = bookkeeper.get("queues")
    assert queues["tasks_by_state"].get("error") == queues["data_folder"]["error"] == 2
    assert "unknown" not in queues["tasks_by_state"]


def test_series_tasks_carry_the_study_uid_of_their_series(
    installation: tuple[int, DataFolder, BookkeeperClient], tmp_path: Path
) -> None:
    """A routed series task has the study UID its series row has, and a search by study UID
    finds it."""
    port, _data, bookkeeper = installation
    series = generate_series(tmp_path / "ct", kind="tiny", count=2)
    storescu(port, series.folder, called_aet="MERCURE")
    # The series row comes from the router's outbox, the task's end from the dispatcher's:
    # wait for both before reading the task.
    (row,) = wait_until(lambda: bookkeeper.series(series_uid=series.series_uid), timeout=30)
    (task,) = wait_until(
        lambda: bookkeeper.tasks(state="success"), timeout=30, message="series task done"
    )
    assert row["study_uid"] == series.study_uid
    assert task["series_uid"] == series.series_uid
    assert task["study_uid"] == series.study_uid
    assert [t["task_id"] for t in bookkeeper.tasks(study_uid=series.study_uid)] == [task["task_id"]]
