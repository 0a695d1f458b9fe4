"""The processor queues completion (no targets) and error notifications before moving a task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from processor_harness import Processor, command_module

from mercure.core.config import parse_document, validate_document
from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import Stage
from mercure.core.events import EventClient, Outbox, read_segment
from mercure.core.notifications.queue import Notification, queued, read_notification
from mercure.core.task import read_task, write_task
from mercure.processor.job import JobContext, run_job
from mercure.processor.runners.command import CommandRunner
from mercure.testing.series import generate_series


def setup(
    processor: Processor, rule: dict[str, Any], settings: dict[str, Any]
) -> tuple[str, JobContext]:
    """A task of rule ``ct`` in processing/ and the context to run it in this process."""
    processor.config["notifications"] = {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/"}}
    processor.config["modules"] = {"behave": command_module("behave.py")}
    processor.config["rules"] = {
        "ct": {
            "rule": "True",
            "action": "process",
            "processing_module": "behave",
            "notification_channels": ["hook"],
            **rule,
        }
    }
    text = yaml.safe_dump(processor.config)
    config: MercureConfig = validate_document(parse_document(text, "x.yaml"), environ={}).config
    series = generate_series(processor.root / "series", "tiny", 1, modality="CT")
    task_id = processor.add_task(series, ["behave"], settings=settings)
    folder = processor.data.stage(Stage.PROCESSING) / task_id
    task = read_task(folder)
    task.info.applied_rule = "ct"
    write_task(folder, task)
    outbox = Outbox(processor.data.outbox_dir, "processor@test")
    context = JobContext(
        data=processor.data,
        modules=dict(config.modules),
        runners={"command": CommandRunner()},
        events=EventClient(outbox, "processor", "test"),
        instance="test",
        config=config,
    )
    return task_id, context


def notifications(processor: Processor) -> list[Notification]:
    return [read_notification(path) for path in queued(processor.data)]


def queued_events(processor: Processor) -> list[dict[str, Any]]:
    found = []
    for path in sorted(processor.data.outbox_dir.glob("processor@*/*")):
        if path.suffix in (".jsonl", ".open"):
            found.extend(e.model_dump(mode="json") for e in read_segment(path))
    return [e for e in found if e["kind"] == "notification.queued"]


ON_REQUEST = {
    "notification_trigger_reception": False,
    "notification_trigger_completion": False,
    "notification_trigger_completion_on_request": True,
}


def test_completion_on_request_notifies_when_the_module_asks(processor: Processor) -> None:
    request = {"requested": True, "text": "finding"}
    task_id, context = setup(processor, ON_REQUEST, {"notification": request})
    final = run_job(context, processor.data.stage(Stage.PROCESSING) / task_id)
    assert final.parent.name == "success"
    [notification] = notifications(processor)
    assert (notification.trigger, notification.task_id, notification.rule) == (
        "completion",
        task_id,
        "ct",
    )
    assert notification.facts["details"] == "finding"
    assert notification.facts["requested"] is True
    stored = json.loads((final / "task.json").read_text())
    assert stored["process"][0]["output"]["__mercure_notification"] == request
    [event] = queued_events(processor)
    assert (event["task_id"], event["data"]["trigger"]) == (task_id, "completion")


def test_completion_on_request_is_silent_without_a_request(processor: Processor) -> None:
    task_id, context = setup(processor, ON_REQUEST, {})
    final = run_job(context, processor.data.stage(Stage.PROCESSING) / task_id)
    assert final.parent.name == "success"
    assert notifications(processor) == []
    assert queued_events(processor) == []


def test_a_failed_module_notifies_error_through_fail_and_report(processor: Processor) -> None:
    task_id, context = setup(processor, {}, {"behaviour": "fail"})
    final = run_job(context, processor.data.stage(Stage.PROCESSING) / task_id)
    assert final.parent.name == "error"
    [notification] = notifications(processor)
    assert notification.trigger == "error"
    assert notification.facts["fail_stage"] == "processing"
    assert notification.facts["reason"]


def test_urgent_only_completion_skips_a_normal_task(processor: Processor) -> None:
    task_id, context = setup(processor, {"notification_urgent_only": ["completion"]}, {})
    run_job(context, processor.data.stage(Stage.PROCESSING) / task_id)
    assert [n.trigger for n in notifications(processor)] == []


@pytest.mark.parametrize("behaviour", ["copy", "fail"])
def test_a_queue_that_cannot_be_written_does_not_keep_the_task(
    processor: Processor, behaviour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A full or broken queue costs the notification, never the task."""
    task_id, context = setup(processor, {}, {"behaviour": behaviour})
    queue: Path = processor.data.notifications_dir
    queue.rmdir()
    queue.write_text("not a folder")
    final = run_job(context, processor.data.stage(Stage.PROCESSING) / task_id)
    assert final.parent.name == ("success" if behaviour == "copy" else "error")
    assert "cannot queue its" in caplog.text
