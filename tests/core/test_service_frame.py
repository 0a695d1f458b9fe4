"""The service frame: config reload between units, stop signals, heartbeat, events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from mercure.core.config import ConfigSource, save_config
from mercure.core.datafolder import DataFolder
from mercure.core.events import read_segment
from mercure.core.heartbeat import liveness, read_heartbeats
from mercure.core.service import Service
from mercure.testing.wait import wait_until

DEMO = Path(__file__).with_name("demo_service.py")


@contextlib.contextmanager
def demo_service(
    tmp_path: Path, unit: float = 0.3
) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """Run the demo service in a child process; yields (process, config path, unit log)."""
    config = tmp_path / "mercure.yaml"
    if not config.exists():
        config.write_text(
            "router: {series_complete_trigger: 60}\nsupervisor: {heartbeat_interval: 0.2}\n"
        )
    log = tmp_path / "units.log"
    env = {**os.environ, "DEMO_UNIT": str(unit)}
    command = [sys.executable, str(DEMO), str(config), str(log)]
    with subprocess.Popen(command, env=env) as process:
        try:
            yield process, config, log
        finally:
            if process.poll() is None:
                process.kill()


def lines(path: Path) -> list[str]:
    """The lines of a log file (none if it does not exist yet)."""
    return path.read_text().splitlines() if path.exists() else []


def test_running_service_picks_up_config_change(tmp_path: Path) -> None:
    """A saved config change is in force from the next unit of work, without a restart."""
    with demo_service(tmp_path) as (process, config, log):
        wait_until(lambda: any(line.endswith(" 60") for line in lines(log)), timeout=20)
        save_config(
            config, "router: {series_complete_trigger: 5}\nsupervisor: {heartbeat_interval: 0.2}\n"
        )
        wait_until(lambda: lines(log)[-1].endswith(" 5"), timeout=10)
        assert process.poll() is None


def test_invalid_config_change_keeps_the_old_one(tmp_path: Path) -> None:
    """A broken file written behind mercure's back is rejected; the service runs on."""
    with demo_service(tmp_path) as (process, config, log):
        wait_until(lambda: len(lines(log)) >= 2, timeout=20)
        config.write_text("router: {series_complete_trigger: never}\n")
        count = len(lines(log))
        wait_until(lambda: len(lines(log)) >= count + 4, timeout=10)
        assert [line for line in lines(log) if line.startswith("end")][-1].endswith(" 60")
        assert process.poll() is None


def test_first_sigterm_finishes_the_current_unit(tmp_path: Path) -> None:
    """After one SIGTERM the unit in progress ends normally and the service exits 0."""
    with demo_service(tmp_path) as (process, _config, log):
        wait_until(lambda: lines(log) and lines(log)[-1].startswith("begin"), timeout=20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    assert lines(log)[-1].startswith("end")


def test_second_sigterm_stops_now(tmp_path: Path) -> None:
    """Two SIGTERMs: the unit in progress is abandoned."""
    with demo_service(tmp_path, unit=30) as (process, _config, log):
        data = DataFolder(tmp_path / "data")
        wait_until(lambda: lines(log) and lines(log)[-1].startswith("begin"), timeout=20)
        process.send_signal(signal.SIGTERM)
        # Signals of one kind do not queue: wait until the first was taken.
        wait_until(lambda: [b for b in read_heartbeats(data.run_dir) if b.state == "stopping"])
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 130
    assert lines(log)[-1].startswith("begin")


def test_heartbeat_and_events_of_a_running_service(tmp_path: Path) -> None:
    """The service writes a heartbeat while up and boot/stop events to its outbox."""
    with demo_service(tmp_path) as (process, _config, _log):
        data = DataFolder(tmp_path / "data")
        beat = wait_until(
            lambda: [b for b in read_heartbeats(data.run_dir) if b.state == "running"], timeout=20
        )[0]
        assert beat.pid == process.pid and liveness(beat) == "up"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    assert [b.state for b in read_heartbeats(data.run_dir)] == ["stopped"]
    outbox = next(data.outbox_dir.iterdir())
    kinds = [e.kind for segment in sorted(outbox.glob("*.jsonl")) for e in read_segment(segment)]
    assert kinds[0] == "service.boot" and kinds[-1] == "service.stop"
    assert not list(outbox.glob("*.open"))


def test_killed_service_is_reported_down(tmp_path: Path) -> None:
    """A SIGKILLed service leaves a heartbeat that status reads as down."""
    with demo_service(tmp_path) as (process, _config, _log):
        data = DataFolder(tmp_path / "data")
        wait_until(lambda: read_heartbeats(data.run_dir), timeout=20)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert liveness(read_heartbeats(data.run_dir)[0]) == "down"


ORPHANED_SERVICE = """
import ctypes, os, signal, subprocess, sys, time
from pathlib import Path

demo, config, log, result = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the orphaned service becomes our child

def parent() -> None:
    # Starts the service as the supervisor does (parent-death signal SIGTERM), asks it to
    # stop, and dies while it is finishing its unit: the service gets a second SIGTERM.
    def die_with_parent() -> None:
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    service = subprocess.Popen([sys.executable, demo, config, log], preexec_fn=die_with_parent)
    Path(result + ".pid").write_text(str(service.pid))
    while not (Path(log).exists() and Path(log).read_text().splitlines()[-1].startswith("begin")):
        time.sleep(0.02)
    service.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # let it take the first signal
    os._exit(0)

middle = os.fork()
if middle == 0:
    parent()
os.waitpid(middle, 0)
pid = int(Path(result + ".pid").read_text())
_, status = os.waitpid(pid, 0)
Path(result).write_text(str(os.waitstatus_to_exitcode(status)))
"""


def test_repeated_parent_death_signal_still_lets_the_unit_finish(tmp_path: Path) -> None:
    """The supervisor asked for a stop, then died: the parent-death SIGTERM that follows is not
    an operator's second signal, so the unit in progress still finishes and the exit is clean."""
    config = tmp_path / "mercure.yaml"
    config.write_text("supervisor: {heartbeat_interval: 0.2}\n")
    log, result = tmp_path / "units.log", tmp_path / "result"
    env = {**os.environ, "DEMO_UNIT": "3"}
    command = [sys.executable, "-c", ORPHANED_SERVICE, str(DEMO), str(config), str(log)]
    subprocess.run([*command, str(result)], env=env, timeout=60, check=True)
    assert result.read_text() == "0"
    assert lines(log)[-1].startswith("end")


class _ArrivalDuringStep(Service):
    """A service whose first step sees nothing yet while work arrives meanwhile (a wake)."""

    name = "arrivals"
    idle_wait = 60.0

    def __init__(self, source: ConfigSource) -> None:
        super().__init__(source)
        self.steps = 0

    async def step(self) -> bool:
        self.steps += 1
        if self.steps == 1:
            await asyncio.sleep(0)
            self.wake()  # inotify reports an arrival while this step is still busy
            await asyncio.sleep(0.05)
            return False
        self.request_stop()
        return False


def test_a_wake_during_a_step_that_found_nothing_is_not_lost(tmp_path: Path) -> None:
    """Work that arrives while a step runs is taken up at once, not after the idle wait."""
    config = tmp_path / "mercure.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    service = _ArrivalDuringStep(ConfigSource(config))
    # Without the wake the loop would sleep for the idle wait (60 s); stop it long before.
    watchdog = threading.Timer(10.0, service.request_stop)
    watchdog.start()
    try:
        assert service.run() == 0
    finally:
        watchdog.cancel()
    assert service.steps == 2
