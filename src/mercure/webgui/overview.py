"""What the overview shows from the data folder: services, queues, disk.

These read files only (heartbeats, stage folders, the file system's free space), so they
work while the bookkeeper is down; the throughput figures come from the bookkeeper.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import PAUSABLE_STAGES, DataFolder, Stage, is_visible
from mercure.core.heartbeat import Heartbeat, liveness, read_heartbeats
from mercure.core.installed import installed_services

STATE_LABELS = {
    "up": "up",
    "starting": "starting",
    "stopping": "stopping",
    "stale": "no heartbeat",
    "down": "down",
    "stopped": "stopped",
    "never": "not started",
    "off": "not run here",
}
"""What each state is called on the page."""
STATE_TONES = {
    "up": "good",
    "starting": "warn",
    "stopping": "warn",
    "stale": "warn",
    "down": "bad",
    "stopped": "bad",
    "never": "bad",
    "off": "muted",
}
"""The colour of each state: good (green), warn (amber), bad (red), muted (grey)."""

STAGE_HELP = {
    Stage.INCOMING: "series being received",
    Stage.STUDIES: "studies being collected",
    Stage.PROCESSING: "waiting for or in processing",
    Stage.OUTGOING: "waiting for or in dispatch",
    Stage.SUCCESS: "done, kept until retention",
    Stage.DISCARD: "discarded, kept until retention",
    Stage.ERROR: "failed: need attention",
}


@dataclass(frozen=True)
class ServiceStatus:
    """One service (instance) as its heartbeat shows it."""

    name: str
    state: str
    """A key of :data:`STATE_LABELS`."""
    instance: str = ""
    host: str = ""
    pid: int | None = None
    last_heartbeat: datetime | None = None
    age: float | None = None
    """Seconds since the last heartbeat."""
    started_at: datetime | None = None
    detail: str = ""
    processes: int = 0
    """Healthy worker processes folded into this row (a receiver run as N processes)."""

    @property
    def label(self) -> str:
        """The state as the page calls it."""
        return STATE_LABELS[self.state]

    @property
    def tone(self) -> str:
        """The state's colour class."""
        return STATE_TONES[self.state]


def _status(beat: Heartbeat, now: datetime) -> ServiceStatus:
    state = liveness(beat, now)
    if state == "up" and beat.state in ("starting", "stopping"):
        state = beat.state
    return ServiceStatus(
        name=beat.service,
        state=state,
        instance=beat.instance,
        host=beat.host,
        pid=beat.pid,
        last_heartbeat=beat.time,
        age=(now - beat.time).total_seconds(),
        started_at=beat.started_at,
        detail=beat.detail,
    )


def service_statuses(data: DataFolder, config: MercureConfig, now: datetime) -> list[ServiceStatus]:
    """The supervisor and every installed service, each instance that wrote a heartbeat.

    A service that never wrote one is ``never`` (expected but not started) or ``off`` (not
    among ``supervisor.services``).
    """
    beats: dict[str, list[Heartbeat]] = {}
    for beat in read_heartbeats(data.run_dir):
        beats.setdefault(beat.service, []).append(beat)
    wanted = set(config.supervisor.services or installed_services())
    statuses = []
    for name in ["supervisor", *installed_services()]:
        found = sorted(beats.get(name, []), key=lambda b: b.instance)
        if found:
            statuses += _folded([_status(beat, now) for beat in found])
        else:
            expected = name == "supervisor" or name in wanted
            statuses.append(ServiceStatus(name=name, state="never" if expected else "off"))
    return statuses


def _folded(rows: list[ServiceStatus]) -> list[ServiceStatus]:
    """One row per service instance: the processes of a multi-process service (instances
    ``<parent>:<n>``, receiver.processes) count into their parent's row while they are up; one
    that is not stays a row of its own, so a dead process shows."""
    parents = {row.instance for row in rows}
    kept: list[ServiceStatus] = []
    children: dict[str, int] = {}
    for row in rows:
        parent, _, index = row.instance.rpartition(":")
        if parent in parents and index.isdigit() and row.state == "up":
            children[parent] = children.get(parent, 0) + 1
        else:
            kept.append(row)
    return [replace(row, processes=children.get(row.instance, 0)) for row in kept]


@dataclass(frozen=True)
class StageStatus:
    """A stage folder: how many entries, whether it is paused."""

    stage: Stage
    depth: int
    pausable: bool
    paused: bool
    pause_reason: str = ""

    @property
    def help(self) -> str:
        """What the entries of this stage are."""
        return STAGE_HELP[self.stage]


@dataclass(frozen=True)
class _Listing:
    stamp: tuple[int, int, int]
    """(device, inode, mtime in ns) of the folder before it was listed."""
    listed_ns: int
    """Wall time the listing started."""
    count: int


class StageCounter:
    """Entries of each stage folder, listing a folder again only when it may have changed.

    Every open overview asks every few seconds, and success/ of a busy installation holds tens
    of thousands of task folders for its retention time (listing 30,000 takes 25 ms): listed
    on every request, the cost of the live refresh grew with the retention and the number of
    open tabs. A folder's mtime changes whenever an entry is created, removed or renamed in or
    out, so an unchanged (device, inode, mtime) means an unchanged count. Except for changes
    within one tick of the file system's clock, which leave the mtime as it was: a count is
    reused only when the folder's mtime was :attr:`settled` seconds older than the listing
    (git's rule for "racily clean" files).
    """

    settled: float = 3.0

    def __init__(self) -> None:
        self._listings: dict[Path, _Listing] = {}

    def depth(self, folder: Path) -> int:
        """Visible entries of ``folder`` (0 when it does not exist)."""
        try:
            stat = os.stat(folder)
        except FileNotFoundError:
            return 0
        stamp = (stat.st_dev, stat.st_ino, stat.st_mtime_ns)
        known = self._listings.get(folder)
        if (
            known is not None
            and known.stamp == stamp
            and known.listed_ns - stat.st_mtime_ns >= self.settled * 1e9
        ):
            return known.count
        listed_ns = time.time_ns()
        try:
            with os.scandir(folder) as entries:
                count = sum(1 for entry in entries if is_visible(entry.name))
        except FileNotFoundError:
            return 0
        # Threads of the pool may list at once: the dictionary assignment is atomic.
        self._listings[folder] = _Listing(stamp, listed_ns, count)
        return count

    def depths(self, data: DataFolder) -> dict[Stage, int]:
        """Visible entries of every stage, as :meth:`DataFolder.queue_depths` counts them."""
        return {stage: self.depth(data.stage(stage)) for stage in Stage}


def stage_statuses(data: DataFolder, counter: StageCounter | None = None) -> list[StageStatus]:
    """Every stage in pipeline order with its depth (counted by ``counter`` when given) and
    pause switch."""
    depths = counter.depths(data) if counter is not None else data.queue_depths()
    statuses = []
    for stage in Stage:
        pausable = stage in PAUSABLE_STAGES
        paused = pausable and data.is_paused(stage)
        reason = ""
        if paused:
            try:
                reason = (data.control_dir / f"pause-{stage.value}").read_text().strip()
            except OSError:
                reason = ""
        statuses.append(StageStatus(stage, depths.get(stage, 0), pausable, paused, reason))
    return statuses


@dataclass(frozen=True)
class DiskStatus:
    """Space of the file system holding the data folder."""

    total: int
    free: int
    used_percent: float
    receiver_floor: int
    """Below this many free bytes the receiver refuses new instances."""
    cleaner_threshold_percent: float
    """Above this usage the cleaner deletes the oldest retained data."""

    @property
    def tone(self) -> str:
        """bad when the receiver refuses (or nearly), warn when the cleaner is at work."""
        if self.free <= self.receiver_floor * 1.1:
            return "bad"
        if self.used_percent >= self.cleaner_threshold_percent:
            return "warn"
        return "good"


def disk_status(data: DataFolder, config: MercureConfig) -> DiskStatus:
    """Free space of the data folder's file system, with the limits that act on it."""
    usage = shutil.disk_usage(data.root)
    # statvfs' "available" (for unprivileged users) is what the services can use.
    stat = os.statvfs(data.root)
    free = stat.f_bavail * stat.f_frsize
    used_percent = 100.0 * (usage.total - free) / usage.total if usage.total else 0.0
    return DiskStatus(
        total=usage.total,
        free=free,
        used_percent=used_percent,
        receiver_floor=config.receiver.min_free_disk_mb << 20,
        cleaner_threshold_percent=config.cleaner.disk_threshold_percent,
    )


def hour_start(moment: datetime) -> datetime:
    """The start of the (UTC) hour ``moment`` is in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def chart_since(now: datetime, days: int = 7) -> datetime:
    """Start of the chart: whole hours, ``days`` days back, the current hour included."""
    return hour_start(now) - timedelta(hours=days * 24 - 1)
