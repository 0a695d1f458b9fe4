"""Processor test harness: a data folder, tasks placed in processing/, the real service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.task import Task, TaskDispatch, TaskInfo, TaskProcessing, new_task_id, write_task
from mercure.testing.series import GeneratedSeries
from mercure.testing.wait import wait_until

MODULES = Path(__file__).with_name("modules")


def command_module(script: str, **options: Any) -> dict[str, Any]:
    """Config of a command module running one of tests/processor/modules/ with this Python."""
    return {"runner": "command", "command": [sys.executable, str(MODULES / script)], **options}


class Processor:
    """A data folder, a configuration, and the processor service in a child process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = DataFolder(root / "data")
        self.data.ensure()
        self.config_path = root / "mercure.yaml"
        self.config: dict[str, Any] = {
            "data_dir": str(self.data.root),
            "supervisor": {"heartbeat_interval": 0.5},
            "processing": {"max_parallel": 1},
            "modules": {},
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.others: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        """Variables added to the services' environment (secrets a test must not see leak)."""

    def write_config(self) -> None:
        """Write the configuration file from :attr:`config`."""
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self) -> Processor:
        """Start ``mercure processor`` with the current configuration."""
        self.process = self._service("processor")
        return self

    def start_dispatcher(self) -> None:
        """Start ``mercure dispatcher`` on the same configuration (stopped with the processor)."""
        self.others.append(self._service("dispatcher"))

    def _service(self, name: str) -> subprocess.Popen[bytes]:
        self.write_config()
        command = [sys.executable, "-m", "mercure", name, "--config", str(self.config_path)]
        return subprocess.Popen(command, env={**os.environ, "TCP_NODELAY": "1", **self.env})

    def stop(self) -> None:
        """Stop the services (SIGTERM, then SIGKILL if one does not go)."""
        for process in [self.process, *self.others]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def kill(self) -> None:
        """SIGKILL the service, as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def add_task(
        self,
        series: GeneratedSeries | list[Path] | None,
        modules: list[str],
        *,
        settings: dict[str, Any] | None = None,
        targets: list[str] | None = None,
        priority: str = "normal",
        retain: bool = False,
        task_id: str | None = None,
        rule: str | None = None,
    ) -> str:
        """Place a task in processing/ the way the router does (for ``rule``, if given); its id."""
        task_id = task_id or new_task_id()
        staging = self.data.stage(Stage.PROCESSING) / f".new-{task_id}"
        staging.mkdir()
        paths = series if isinstance(series, list) else series.paths if series else []
        for path in paths:
            shutil.copyfile(path, staging / path.name)
        task = Task(
            id=task_id,
            info=TaskInfo(
                action="both" if targets else "process",
                uid=series.series_uid if isinstance(series, GeneratedSeries) else "1.2.3",
                priority=priority,  # type: ignore[arg-type]
                applied_rule=rule,
                triggered_rules={rule: True} if rule else {},
            ),
            dispatch=TaskDispatch(target_name=targets or []),
            process=[
                TaskProcessing(
                    module_name=name, settings=settings or {}, retain_input_images=retain
                )
                for name in modules
            ],
        )
        write_task(staging, task)
        staging.rename(self.data.stage(Stage.PROCESSING) / task_id)
        return task_id

    def where(self, task_id: str) -> Stage | None:
        """The stage a task is in now (visible name), if any."""
        for stage in Stage:
            if (self.data.stage(stage) / task_id).is_dir():
                return stage
        return None

    def wait_for(self, task_id: str, stage: Stage, timeout: float = 20) -> Path:
        """Wait until the task arrives in ``stage``; its folder."""
        wait_until(
            lambda: self.where(task_id) == stage, timeout, message=f"task {task_id} in {stage}"
        )
        return self.data.stage(stage) / task_id

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Events the service wrote to its outbox (sealed and open segments)."""
        found = []
        for path in sorted(self.data.outbox_dir.glob("processor@*/*")):
            if path.suffix in (".jsonl", ".open"):
                try:
                    text = path.read_text()
                except FileNotFoundError:  # sealed or delivered meanwhile: read on the next call
                    continue
                for line in text.splitlines():
                    event = json.loads(line)
                    if kind is None or event["kind"] == kind:
                        found.append(event)
        return found


def module_names(series: GeneratedSeries, prefix: str = "") -> list[str]:
    """The names a module sees for the series' instances (mercure's ``<series>#<sop>.dcm``)."""
    return sorted(
        f"{prefix}{series.series_uid}#{instance.sop_instance_uid}.dcm"
        for instance in series.instances
    )


MODULE_IMAGE = "localhost/mercure-test-module:1"
"""The container test module image, built by the ``podman`` fixture."""
