"""The scale-out feeder's reconciliation, against a recording publisher.

``RecordingPublisher`` is a fake standing in for the broker (tests/worker runs the real ones):
it records what is published and reports an empty queue, as a broker does while a worker holds
the only message.
"""

from __future__ import annotations

import time
from pathlib import Path

from mercure.core.claims import Claim
from mercure.core.config.models import ScaleOutConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.workqueue import Feeder, WorkItem, WorkStage


class RecordingPublisher:
    """Fake broker: records the published ids; every queue reads as empty."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, item: WorkItem) -> None:
        self.published.append(item.task_id)

    def depth(self, stage: WorkStage, queue: str) -> int:
        return 0

    def close(self) -> None:
        pass


def _feeder(tmp_path: Path) -> tuple[Feeder, RecordingPublisher, Path]:
    data = DataFolder(tmp_path / "data")
    data.ensure()
    task_dir = data.stage(Stage.PROCESSING) / "task-1"
    task_dir.mkdir()
    settings = ScaleOutConfig(
        engine="celery", broker="redis://127.0.0.1:6379/0", reconcile_interval=0.05
    )
    publisher = RecordingPublisher()
    return Feeder(data, "processing", publisher, settings), publisher, task_dir  # type: ignore[arg-type]


def test_reconciliation_leaves_a_task_alone_while_a_worker_runs_it(tmp_path: Path) -> None:
    """Queue empty because a worker holds the message and the task's claim: not published again."""
    feeder, publisher, task_dir = _feeder(tmp_path)
    item = WorkItem("task-1", "processing")
    assert feeder.feed([item]) == 1
    claim = Claim.take(task_dir)  # the worker's claim, held while its module runs
    try:
        for _ in range(3):
            time.sleep(0.06)
            assert feeder.feed([item]) == 0
            assert feeder.reconciled
    finally:
        claim.release()
    assert publisher.published == ["task-1"]


def test_reconciliation_publishes_again_once_the_worker_is_gone(tmp_path: Path) -> None:
    """The worker died (its claim went with it) and the queue is empty: published again, once."""
    feeder, publisher, task_dir = _feeder(tmp_path)
    item = WorkItem("task-1", "processing")
    feeder.feed([item])
    Claim.take(task_dir).release()
    time.sleep(0.06)
    assert feeder.feed([item]) == 1
    assert feeder.feed([item]) == 0  # not again before the next reconciliation is due
    assert publisher.published == ["task-1", "task-1"]
