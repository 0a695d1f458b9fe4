"""The supervisor: restarts crashed children with backoff and stops all cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from mercure.testing.wait import wait_until

CHILD = """
import os, signal, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
runs = folder / "runs"
n = len(runs.read_text().splitlines()) + 1 if runs.exists() else 1
with runs.open("a") as handle:
    handle.write(f"{os.getpid()}\\n")
if n == 1:
    sys.exit(3)
def stop(signum, frame):
    (folder / "stopped").write_text(str(os.getpid()))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""

SUPERVISOR = """
import json, sys
from mercure.supervisor.supervisor import ChildSpec, Supervisor
folder = sys.argv[1]
child = [sys.executable, "-c", sys.argv[2], folder]
exits = []
supervisor = Supervisor(
    [ChildSpec("crashy", child)],
    backoff_initial=0.1,
    tick=0.2,
    stop_timeout=5,
    on_exit=lambda name, code, delay: exits.append([name, code]),
)
code = supervisor.run()
with open(folder + "/exits.json", "w") as handle:
    json.dump(exits, handle)
sys.exit(code)
"""


@contextlib.contextmanager
def supervisor(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A supervisor process watching one child that crashes on its first run."""
    command = [sys.executable, "-c", SUPERVISOR, str(tmp_path), CHILD]
    with subprocess.Popen(command) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def runs(tmp_path: Path) -> list[int]:
    """Process ids of the child's runs so far."""
    path = tmp_path / "runs"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_crashed_child_is_restarted_and_stopped_cleanly(tmp_path: Path) -> None:
    """A child that exits with an error is started again; SIGTERM stops it and the supervisor."""
    with supervisor(tmp_path) as process:
        pids = wait_until(lambda: len(runs(tmp_path)) >= 2 and runs(tmp_path), timeout=20)
        assert alive(pids[1])
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    assert (tmp_path / "stopped").read_text() == str(pids[1])
    assert json.loads((tmp_path / "exits.json").read_text()) == [["crashy", 3]]


def test_killed_supervisor_takes_its_children_down(tmp_path: Path) -> None:
    """If the supervisor is SIGKILLed, the kernel sends its children SIGTERM: no orphans."""
    with supervisor(tmp_path) as process:
        pids = wait_until(lambda: len(runs(tmp_path)) >= 2 and runs(tmp_path), timeout=20)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    wait_until(lambda: not alive(pids[1]), timeout=10)
    assert (tmp_path / "stopped").read_text() == str(pids[1])


STOPPABLE = """
import signal, sys, time
folder, name = sys.argv[1], sys.argv[2]
def stop(signum, frame):
    with open(folder + "/stops", "a") as handle:
        handle.write(name + " ")
    time.sleep(0.3)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
with open(folder + "/started", "a") as handle:
    handle.write(name + " ")
while True:
    time.sleep(1)
"""

ORDERED = """
import sys
from mercure.supervisor.supervisor import ChildSpec, Supervisor
folder, child = sys.argv[1], sys.argv[2]
specs = [
    ChildSpec(name, [sys.executable, "-c", child, folder, name], stop_last=name == "bookkeeper")
    for name in ("bookkeeper", "receiver", "router")
]
sys.exit(Supervisor(specs, tick=0.2, stop_timeout=5).run())
"""


def test_bookkeeper_is_stopped_after_the_others(tmp_path: Path) -> None:
    """The supervisor stops the bookkeeper last, so it still receives the others' last events."""
    command = [sys.executable, "-c", ORDERED, str(tmp_path), STOPPABLE]
    with subprocess.Popen(command) as process:
        try:
            started = tmp_path / "started"
            wait_until(lambda: started.exists() and len(started.read_text().split()) == 3)
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
    stops = (tmp_path / "stops").read_text().split()
    assert sorted(stops[:2]) == ["receiver", "router"] and stops[2] == "bookkeeper"


SUPERVISOR_WITH_DELIVERY = """
import sys, time
from pathlib import Path
from mercure.core.delivery import OutboxDeliverer
from mercure.core.events import EventClient, Outbox
from mercure.supervisor.supervisor import ChildSpec, Supervisor
folder = Path(sys.argv[1])
# As `mercure run` and the receiver's parent do: event delivery starts before the supervisor.
events = EventClient(Outbox(folder / "outbox", "supervisor@test"), "supervisor", "test")
OutboxDeliverer(events, "http://127.0.0.1:9").start()
def tick(supervisor):
    (folder / "ticking").touch()
    time.sleep(0.5)  # the SIGTERM arrives now, while the supervisor is not waiting for it
    (folder / "ticking").unlink()
child = [sys.executable, "-c", "import time; time.sleep(60)"]
sys.exit(Supervisor([ChildSpec("sleeper", child)], tick=0.2, on_tick=tick).run())
"""


def test_sigterm_while_the_supervisor_is_busy_stops_it_cleanly(tmp_path: Path) -> None:
    """SIGTERM arriving outside the supervisor's wait (during its tick, with the event delivery
    thread running) is handled like any other: the child is stopped and the exit code is 0.
    (The delivery thread used to take the signal with its default action: killed, -15.)"""
    command = [sys.executable, "-c", SUPERVISOR_WITH_DELIVERY, str(tmp_path)]
    with subprocess.Popen(command) as process:
        try:
            wait_until(lambda: (tmp_path / "ticking").exists(), timeout=30, interval=0.01)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
