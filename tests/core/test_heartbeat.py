"""Heartbeat files: which instance names are in use by a live process, here or on other hosts."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

from mercure.core.clock import utcnow
from mercure.core.heartbeat import Heartbeat, instance_in_use, write_heartbeat


def beat(*, host: str, pid: int, age: float = 0.0, state: str = "running") -> Heartbeat:
    now = utcnow()
    return Heartbeat(
        service="worker",
        instance="gpu1",
        host=host,
        pid=pid,
        state=state,  # type: ignore[arg-type]
        started_at=now - timedelta(minutes=5),
        time=now - timedelta(seconds=age),
        interval=1.0,
    )


def test_a_fresh_heartbeat_of_another_host_holds_the_name(tmp_path: Path) -> None:
    """Another host (sharing the data folder) beat under the name a second ago: in use."""
    write_heartbeat(tmp_path, beat(host="gpu-node-7", pid=4242, age=1.0))
    holder = instance_in_use(tmp_path, "worker", "gpu1")
    assert holder is not None and holder.host == "gpu-node-7"
    assert instance_in_use(tmp_path, "worker", "gpu2") is None


def test_a_stale_or_stopped_heartbeat_of_another_host_frees_the_name(tmp_path: Path) -> None:
    """Silent for more than three intervals (the host died) or stopped: the name is free."""
    write_heartbeat(tmp_path, beat(host="gpu-node-7", pid=4242, age=10.0))
    assert instance_in_use(tmp_path, "worker", "gpu1") is None
    write_heartbeat(tmp_path, beat(host="gpu-node-7", pid=4242, state="stopped"))
    assert instance_in_use(tmp_path, "worker", "gpu1") is None


def test_on_this_host_a_live_process_holds_the_name_and_a_dead_one_or_itself_does_not(
    tmp_path: Path,
) -> None:
    """Here the pid decides: a live other process holds it; a dead one (killed -9, its beat
    still fresh) and the asking process itself do not."""
    here = socket.gethostname()
    with subprocess.Popen(["sleep", "30"]) as other:
        write_heartbeat(tmp_path, beat(host=here, pid=other.pid))
        assert instance_in_use(tmp_path, "worker", "gpu1") is not None
        other.kill()
        other.wait()
    assert instance_in_use(tmp_path, "worker", "gpu1") is None
    write_heartbeat(tmp_path, beat(host=here, pid=os.getpid()))
    assert instance_in_use(tmp_path, "worker", "gpu1") is None
