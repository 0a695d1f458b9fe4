"""Notifications end to end: `mercure run` with every service, DCMTK storescu sending, a real
HTTP server on loopback recording the webhook requests.

A module's request (result.json's ``__mercure_notification``) becomes exactly one webhook
call; and with the receiver of the webhook down while 100 series arrive, every reception
notification is retried until it is up and then arrives exactly once.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.notifications.queue import queued, read_notification
from mercure.core.task import read_task
from mercure.testing.installation import MercureProcess, write_config
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until
from mercure.testing.webhook import Recorder, http_recorder

pytestmark = [pytest.mark.peers, pytest.mark.slow]

BODY = """{"event": {{ event | tojson }}, "rule": {{ rule | tojson }},
 "task_id": {{ task_id | tojson }}, "details": {{ details | tojson }}}"""

FINDING_MODULE = """
import json, os, shutil
from pathlib import Path
source, target = Path(os.environ["MERCURE_IN_DIR"]), Path(os.environ["MERCURE_OUT_DIR"])
for path in source.iterdir():
    if path.suffix == ".dcm":
        shutil.copyfile(path, target / path.name)
request = {"requested": True, "text": "finding"}
(target / "result.json").write_text(json.dumps({"__mercure_notification": request}))
"""


def bodies(recorder: Recorder) -> list[dict[str, Any]]:
    """The JSON bodies of the requests the recorder answered."""
    return [json.loads(request.body) for request in recorder.delivered()]


@contextlib.contextmanager
def installation(
    tmp_path: Path, webhook_url: str, rules: dict[str, Any], modules: dict[str, Any]
) -> Iterator[tuple[MercureProcess, DataFolder]]:
    """`mercure run` with a webhook channel ``hook`` to the recorder and fast notifier retries."""
    receiver_port, bookkeeper_port = free_port(), free_port()
    config_path = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        targets={},
        rules=rules,
        modules=modules,
    )
    config = yaml.safe_load(config_path.read_text())
    config["notifications"] = {"hook": {"type": "webhook", "url": webhook_url, "body": BODY}}
    config["notifier"] = {"retry_base_delay": 0.2, "retry_max_delay": 1}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    mercure = MercureProcess(
        "run",
        config_path,
        listen_port=receiver_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    with mercure:
        yield mercure, DataFolder(config["data_dir"])
        assert mercure.shutdown() == 0, mercure.log_text()


def test_a_module_request_becomes_one_webhook_call(tmp_path: Path) -> None:
    """Completion on request only: the module's text arrives once, in `details`."""
    script = tmp_path / "finding.py"
    script.write_text(FINDING_MODULE)
    rules = {
        "ct_finding": {
            "rule": "tags.Modality == 'CT'",
            "action": "process",
            "processing_module": "finder",
            "notification_channels": ["hook"],
            "notification_trigger_reception": False,
            "notification_trigger_completion": False,
            "notification_trigger_completion_on_request": True,
        }
    }
    modules = {"finder": {"runner": "command", "command": [sys.executable, str(script)]}}
    with (
        http_recorder() as recorder,
        installation(tmp_path, recorder.url, rules, modules) as (mercure, data),
    ):
        series = generate_series(tmp_path / "series", "tiny", 2, seed=3, modality="CT")
        assert mercure.listen_port is not None
        storescu(mercure.listen_port, series.folder, called_aet="MERCURE")
        wait_until(
            lambda: recorder.delivered() and data.entries(Stage.SUCCESS),
            timeout=40,
            interval=0.1,
            message="the webhook call and the task in success/",
        )
        wait_until(lambda: not queued(data), timeout=20, message="an empty queue")
        [folder] = data.entries(Stage.SUCCESS)
        task = read_task(folder)
    assert bodies(recorder) == [
        {"event": "completion", "rule": "ct_finding", "task_id": task.id, "details": "finding"}
    ]
    assert recorder.delivered()[0].headers["X-Mercure-Notification-Id"]


def test_notifications_wait_for_a_receiver_that_is_down_and_arrive_once(tmp_path: Path) -> None:
    """100 series while the webhook's server is down: each reception arrives once it is up."""
    count = 100
    port = free_port()  # nothing listens there yet: the receiver of the webhook is down
    rules = {
        "ct_seen": {
            "rule": "tags.Modality == 'CT'",
            "action": "notification",
            "notification_channels": ["hook"],
            "notification_trigger_completion": False,
        }
    }
    series_root = tmp_path / "series"
    for number in range(count):
        generate_series(
            series_root / f"s{number}", "tiny", 1, seed=5, series_number=number + 1, modality="CT"
        )
    with installation(tmp_path, f"http://127.0.0.1:{port}/hook", rules, {}) as (mercure, data):
        assert mercure.listen_port is not None
        storescu(mercure.listen_port, series_root, called_aet="MERCURE")

        def every_one_refused_while_down() -> bool:
            paths = queued(data)
            return len(paths) == count and all(
                read_notification(path).attempts >= 1 for path in paths
            )

        # All queued, and each already tried and refused (retried, not lost, none starved).
        wait_until(
            every_one_refused_while_down, timeout=60, interval=0.5, message="attempts refused"
        )
        with http_recorder(port) as recorder:
            wait_until(
                lambda: not queued(data) and len(recorder.delivered()) >= count,
                timeout=30,
                interval=0.1,
                message="every notification delivered",
            )
            tasks = {read_task(folder).id for folder in data.entries(Stage.SUCCESS)}
    received = recorder.delivered()
    ids = [request.headers["X-Mercure-Notification-Id"] for request in received]
    task_ids = [body["task_id"] for body in bodies(recorder)]
    assert len(received) == count
    assert len(set(ids)) == count
    assert sorted(task_ids) == sorted(tasks) and len(set(task_ids)) == count
    assert {body["event"] for body in bodies(recorder)} == {"reception"}
