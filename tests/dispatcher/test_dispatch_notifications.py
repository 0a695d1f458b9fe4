"""The dispatcher queues completion and error notifications before it moves a task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dispatch_site import Site

from mercure.core.datafolder import Stage
from mercure.core.notifications.queue import Notification, queued, read_notification
from mercure.core.task import TaskProcessing, read_task, write_task
from mercure.testing.series import generate_series


def prepare(site: Site, tmp_path: Path, folder: Path, **rule: Any) -> str:
    """One task of rule ``ct`` for target ``archive`` (a folder) in outgoing/."""
    site.extra = {
        "notifications": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/"}},
        "rules": {
            "ct": {
                "rule": "True",
                "targets": ["archive"],
                "notification_channels": ["hook"],
                "notification_trigger_reception": False,
                **rule,
            }
        },
    }
    site.configure({"archive": {"type": "folder", "folder": str(folder)}}, retry_attempts=1)
    series = generate_series(tmp_path / "series", "tiny", 1, modality="CT")
    task_id = site.add_task(series.paths, ["archive"])
    task_dir = site.data.stage(Stage.OUTGOING) / task_id
    task = read_task(task_dir)
    task.info.applied_rule = "ct"
    # As the processor leaves it: the module's result.json in process[].output.
    task.process = [
        TaskProcessing(
            module_name="seg",
            output={"__mercure_notification": {"requested": True, "text": "finding"}},
        )
    ]
    write_task(task_dir, task)
    return task_id


def notifications(site: Site) -> list[Notification]:
    return [read_notification(path) for path in queued(site.data)]


def test_a_delivered_task_notifies_completion_with_its_results(site: Site, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    task_id = prepare(
        site,
        tmp_path,
        archive,
        notification_trigger_completion=False,
        notification_trigger_completion_on_request=True,
    )
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    [notification] = notifications(site)
    assert (notification.trigger, notification.task_id) == ("completion", task_id)
    assert notification.facts["targets"] == ["archive"]
    assert notification.facts["details"] == "finding"
    [event] = site.events("notification.")
    assert (event["kind"], event["trigger"], event["channel"]) == (
        "notification.queued",
        "completion",
        "hook",
    )


def test_a_failed_task_notifies_error(site: Site, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the target folder should be")
    task_id = prepare(site, tmp_path, blocker)
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    [notification] = notifications(site)
    assert (notification.trigger, notification.task_id) == ("error", task_id)
    assert notification.facts["fail_stage"]
    assert "archive" in notification.facts["reason"]
