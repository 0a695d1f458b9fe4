"""Scale-out test frame: a shared data folder, the feeding services and ``mercure worker``s.

Used by tests/worker/ and bench/bench_workers.py. The processing module is a shell script that
naps (a wait-bound job) and records each run, so that a test counts how often each task ran.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import Event
from mercure.core.heartbeat import read_heartbeats
from mercure.core.task import Task, TaskDispatch, TaskInfo, TaskProcessing, new_task_id, write_task
from mercure.testing.installation import OutboxRecorder
from mercure.testing.wait import wait_until

SLEEPY_MODULE = """#!/bin/sh
# sleepy_module.sh RUNS_FILE SECONDS: appends "start <task id> <pid>" before and
# "end <task id> <pid>" after its nap to RUNS_FILE. A shell script, not Python: a hundred tasks
# should cost their naps, not a hundred interpreter start-ups.
set -e
task_id=$(sed -n 's/^  "id": "\\(.*\\)",$/\\1/p' "$MERCURE_IN_DIR/task.json")
echo "start $task_id $$" >> "$1"
sleep "$2"
for file in "$MERCURE_IN_DIR"/*.dcm; do cp "$file" "$MERCURE_OUT_DIR/"; done
echo "end $task_id $$" >> "$1"
"""


class Cluster:
    """One data folder, one broker, the processor/dispatcher feeding it, and workers."""

    def __init__(self, root: Path, broker: str, *, nap: float = 0.3) -> None:
        self.root = root
        self.data = DataFolder(root / "data")
        self.data.ensure()
        self.runs = root / "runs.txt"
        self.runs.touch()
        sleepy = root / "sleepy_module.sh"
        sleepy.write_text(SLEEPY_MODULE)
        self.config_path = root / "mercure.yaml"
        self.prefix = "t" + uuid.uuid4().hex[:12]  # the shared brokers serve other tests too
        self.config: dict[str, Any] = {
            "data_dir": str(self.data.root),
            "logging": {"level": "INFO"},
            "supervisor": {"heartbeat_interval": 0.5},
            "modules": {
                "sleepy": {
                    "runner": "command",
                    "command": ["/bin/sh", str(sleepy), str(self.runs), str(nap)],
                }
            },
            "targets": {"archive": {"type": "folder", "folder": str(root / "archive")}},
            "dispatch": {"retry_base_delay": 0.2, "retry_max_delay": 0.5},
            "scale_out": {
                "engine": "celery",
                "broker": broker,
                "queue_prefix": self.prefix,
                "reconcile_interval": 1.0,
                "visibility_timeout": 3.0,
            },
        }
        self.recorder = OutboxRecorder(root / "events").start()
        self.feeders: dict[str, subprocess.Popen[bytes]] = {}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def write_config(self) -> None:
        """Write :attr:`config` to the configuration file."""
        self.config_path.write_text(yaml.safe_dump(self.config))

    def _start(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        if not self.config_path.exists():
            self.write_config()
        command = [sys.executable, "-m", "mercure", *args, "--config", str(self.config_path)]
        env = {**os.environ, **self.recorder.env()}
        with open(self.root / f"{log_name}.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def start_feeders(self, *services: str) -> None:
        """Start the services that publish (``processor``, ``dispatcher``)."""
        for name in services or ("processor", "dispatcher"):
            self.feeders[name] = self._start([name], name)

    def start_worker(self, instance: str, *extra: str) -> subprocess.Popen[bytes]:
        """Start ``mercure worker --instance NAME`` and wait for its heartbeat."""
        return self.start_workers([instance], *extra)[0]

    def launch_worker(self, instance: str, log_name: str) -> subprocess.Popen[bytes]:
        """Start ``mercure worker --instance NAME`` without waiting (it may refuse to start)."""
        return self._start(["worker", "--instance", instance], log_name)

    def start_workers(self, instances: list[str], *extra: str) -> list[subprocess.Popen[bytes]]:
        """Start several workers at once, then wait until each reports running."""
        started = []
        for instance in instances:
            process = self._start(["worker", "--instance", instance, *extra], f"worker-{instance}")
            self.workers[instance] = process
            started.append(process)
        for instance, process in zip(instances, started, strict=True):
            wait_until(
                lambda process=process: (
                    process.poll() is not None  # type: ignore[misc]
                    or any(
                        b.pid == process.pid and b.state == "running"
                        for b in read_heartbeats(self.data.run_dir)
                    )
                ),
                timeout=60,
                message=f"worker {instance} running",
            )
            assert process.poll() is None, (self.root / f"worker-{instance}.log").read_text()
        return started

    def stop(self, *, graceful: bool = False) -> None:
        """Stop everything: SIGKILL by default (every stage is crash-safe, and a test's checks
        are done by then), or SIGTERM first with ``graceful``."""
        processes = [*self.workers.values(), *self.feeders.values()]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def add_task(self, *, targets: list[str] | None = None, priority: str = "normal") -> str:
        """Place a one-file task for the sleepy module in processing/, as the router does."""
        task_id = new_task_id()
        staging = self.data.stage(Stage.PROCESSING) / f".new-{task_id}"
        staging.mkdir()
        (staging / "1.2.3.dcm").write_bytes(b"not really DICOM; the module only copies it")
        task = Task(
            id=task_id,
            info=TaskInfo(
                action="both" if targets else "process",
                uid="1.2.3",
                priority=priority,
            ),
            dispatch=TaskDispatch(target_name=targets or []),
            process=[TaskProcessing(module_name="sleepy")],
        )
        write_task(staging, task)
        staging.rename(self.data.stage(Stage.PROCESSING) / task_id)
        return task_id

    def in_stage(self, stage: Stage) -> set[str]:
        """Ids of the visible tasks in a stage."""
        return {path.name for path in self.data.entries(stage)}

    def run_counts(self, what: str = "end") -> collections.Counter[str]:
        """How often the module started or ended per task id."""
        counts: collections.Counter[str] = collections.Counter()
        for line in self.runs.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == what:
                counts[parts[1]] += 1
        return counts

    def events(self, kind: str) -> list[Event]:
        """Every event of a kind any process wrote."""
        return [event for event in self.recorder.events() if event.kind == kind]
