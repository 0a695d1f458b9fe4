"""`mercure run` and `mercure status`: the supervisor wired to the configuration."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from mercure.core.clock import utcnow
from mercure.core.config import LoadedConfig
from mercure.core.datafolder import PAUSABLE_STAGES, DataFolder
from mercure.core.delivery import OutboxDeliverer
from mercure.core.events import EventClient, Outbox
from mercure.core.heartbeat import Heartbeat, liveness, read_heartbeats, write_heartbeat
from mercure.core.notifications.queue import queued
from mercure.supervisor.registry import installed_services
from mercure.supervisor.supervisor import ChildSpec, Supervisor

log = logging.getLogger(__name__)


def service_argv(name: str, config_path: Path) -> list[str]:
    """The command that runs one service with the given configuration."""
    return [sys.executable, "-m", "mercure", name, "--config", str(config_path)]


def run_all(loaded: LoadedConfig) -> int:
    """Run every configured and installed service under a supervisor until stopped."""
    config = loaded.config
    data = DataFolder(config.data_dir)
    data.ensure()
    wanted = config.supervisor.services or installed_services()
    names = [name for name in installed_services() if name in wanted]
    if not names:
        log.warning("no service is installed yet: the supervisor only keeps its heartbeat")
    instance = socket.gethostname()
    outbox = Outbox(data.outbox_dir, f"supervisor@{instance}")
    events = EventClient(outbox, "supervisor", instance)
    deliverer = OutboxDeliverer.from_config(events, config)
    deliverer.start()
    started_at = utcnow()

    def beat(supervisor: Supervisor) -> None:
        pids = supervisor.pids()
        write_heartbeat(
            data.run_dir,
            Heartbeat(
                service="supervisor",
                instance=instance,
                host=instance,
                pid=os.getpid(),
                state="running",
                started_at=started_at,
                time=utcnow(),
                interval=config.supervisor.heartbeat_interval,
                detail=", ".join(f"{name}={pid or '-'}" for name, pid in pids.items()),
            ),
        )

    def exited(name: str, code: int, delay: float) -> None:
        events.emit(
            "service.exited",
            severity="error",
            message=f"{name} exited with code {code}; restarting in {delay:.0f} s",
            child=name,
            exit_code=code,
        )

    supervisor = Supervisor(
        [
            ChildSpec(name, service_argv(name, loaded.path), stop_last=name == "bookkeeper")
            for name in names
        ],
        backoff_max=config.supervisor.restart_backoff_max,
        stop_timeout=config.supervisor.stop_timeout,
        tick=config.supervisor.heartbeat_interval,
        on_tick=beat,
        on_exit=exited,
    )
    log.info("supervisor: data folder %s; services: %s", data.root, ", ".join(names) or "none")
    try:
        return supervisor.run()
    finally:
        write_heartbeat(
            data.run_dir,
            Heartbeat(
                service="supervisor",
                instance=instance,
                host=instance,
                pid=os.getpid(),
                state="stopped",
                started_at=started_at,
                time=utcnow(),
                interval=config.supervisor.heartbeat_interval,
            ),
        )
        deliverer.stop()
        outbox.close()


def status_report(loaded: LoadedConfig) -> str:
    """What `mercure status` prints: each service's liveness and each stage's queue depth."""
    data = DataFolder(loaded.config.data_dir)
    now = utcnow()
    lines = [f"data folder: {data.root}", "", "services:"]
    beats: dict[str, Heartbeat] = {}
    for found in read_heartbeats(data.run_dir):
        # Sorted by file name, a service's own heartbeat comes before those of its processes
        # (``receiver@host`` before ``receiver@host:1``): that one stands for the service.
        beats.setdefault(found.service, found)
    for name in ["supervisor", *installed_services()]:
        beat = beats.get(name)
        if beat is None:
            lines.append(f"  {name:<12} down      (never started here)")
            continue
        age = (now - beat.time).total_seconds()
        state = liveness(beat, now)
        lines.append(
            f"  {name:<12} {state:<9} pid {beat.pid:<7} last heartbeat {age:.0f} s ago"
            + (f"  [{beat.detail}]" if beat.detail else "")
        )
    workers = [beat for beat in read_heartbeats(data.run_dir) if beat.service == "worker"]
    if workers:
        lines += ["", "workers (scale-out):"]
        for beat in sorted(workers, key=lambda beat: (beat.host, beat.instance)):
            age = (now - beat.time).total_seconds()
            lines.append(
                f"  {beat.host}/{beat.instance:<16} {liveness(beat, now):<9} pid {beat.pid:<7} "
                f"last heartbeat {age:.0f} s ago" + (f"  [{beat.detail}]" if beat.detail else "")
            )
    lines += ["", "queues:"]
    for stage, depth in data.queue_depths().items():
        paused = " (paused)" if stage in PAUSABLE_STAGES and data.is_paused(stage) else ""
        lines.append(f"  {stage.value:<12} {depth}{paused}")
    lines.append(f"  {'notifications':<12} {len(queued(data))}")
    return "\n".join(lines)
