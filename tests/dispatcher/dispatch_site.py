"""Helpers of the dispatcher tests: a data folder with config and tasks, a fast dispatcher."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mercure.core.config import ConfigSource
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import read_segment
from mercure.core.task import Task, TaskDispatch, TaskInfo, new_task_id, write_task
from mercure.dispatcher.service import DispatcherService

FAST_RETRIES = {"retry_attempts": 3, "retry_base_delay": 0.05, "retry_max_delay": 0.2}


class FastDispatcher(DispatcherService):
    """The dispatcher with a short idle wait, for driving it inside a test's event loop."""

    idle_wait = 0.05


class Site:
    """A data folder with its configuration file, and helpers to queue tasks and dispatch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = DataFolder(root / "data")
        self.data.ensure()
        self.config_path = root / "mercure.yaml"
        self.targets: dict[str, Any] = {}
        self.dispatch: dict[str, Any] = dict(FAST_RETRIES)
        self.extra: dict[str, Any] = {}

    def configure(self, targets: Mapping[str, Any], **dispatch: Any) -> None:
        """Write mercure.yaml with these targets and dispatch settings (fast retries)."""
        self.targets = dict(targets)
        self.dispatch = {**FAST_RETRIES, **dispatch}
        document = {
            "data_dir": str(self.data.root),
            "targets": self.targets,
            "dispatch": self.dispatch,
            "supervisor": {"heartbeat_interval": 0.5},
            **self.extra,
        }
        self.config_path.write_text(yaml.safe_dump(document))

    def add_task(
        self,
        files: Iterable[Path],
        targets: list[str],
        *,
        priority: str = "normal",
        sender_aet: str | None = None,
        sender_address: str | None = None,
        receiver_aet: str | None = None,
    ) -> str:
        """Queue a task in outgoing/ with hard links to ``files`` named by SOP Instance UID."""
        task_id = new_task_id()
        folder = self.data.stage(Stage.OUTGOING) / f".new-{task_id}"
        folder.mkdir()
        for path in files:
            os.link(path, folder / path.name)
        task = Task(
            id=task_id,
            info=TaskInfo(
                action="route",
                uid="1.2.3",
                priority=priority,  # type: ignore[arg-type]
                sender_aet=sender_aet,
                sender_address=sender_address,
                receiver_aet=receiver_aet,
            ),
            dispatch=TaskDispatch(target_name=targets),
        )
        write_task(folder, task)
        folder.rename(self.data.stage(Stage.OUTGOING) / task_id)
        return task_id

    def where(self, task_id: str) -> Stage | None:
        """The stage the task is in now."""
        for stage in (Stage.OUTGOING, Stage.SUCCESS, Stage.ERROR):
            if (self.data.stage(stage) / task_id).is_dir():
                return stage
        return None

    def task_json(self, task_id: str) -> dict[str, Any]:
        """The task's task.json wherever it is."""
        stage = self.where(task_id)
        assert stage is not None, f"task {task_id} is nowhere"
        return json.loads((self.data.stage(stage) / task_id / "task.json").read_text())

    def dispatch_until(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        """Run the dispatcher service in this thread until ``done()`` holds (or fail)."""
        asyncio.run(_serve_until(FastDispatcher(ConfigSource(self.config_path)), done, timeout))

    def run_until_finished(self, *task_ids: str, timeout: float = 30.0) -> None:
        """Run the dispatcher until every task left outgoing/."""
        self.dispatch_until(
            lambda: all(self.where(t) in (Stage.SUCCESS, Stage.ERROR) for t in task_ids), timeout
        )

    def events(self, kind_prefix: str = "dispatch.") -> list[dict[str, Any]]:
        """Events the dispatcher wrote to its outbox (sealed and open segments)."""
        found = []
        for segment in sorted(self.data.outbox_dir.rglob("*")):
            if segment.suffix in (".jsonl", ".open"):
                for event in read_segment(segment):
                    if event.kind.startswith(kind_prefix):
                        found.append(
                            {
                                "kind": event.kind,
                                "task_id": event.task_id,
                                "message": event.message,
                                **event.data,
                            }
                        )
        return found


async def _serve_until(
    service: DispatcherService, done: Callable[[], bool], timeout: float
) -> None:
    await service.setup()
    serving = asyncio.create_task(service.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not done():
            if serving.done():
                serving.result()
                raise AssertionError("the dispatcher stopped on its own")
            if loop.time() > deadline:
                raise AssertionError(f"dispatcher did not finish within {timeout} s")
            await asyncio.sleep(0.02)  # the event loop must run the service while we poll
    finally:
        service.stopping.set()
        await serving
        await service.teardown()
        service.outbox.close()
