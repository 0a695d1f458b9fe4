"""The chaos soak: a steady DICOM stream through a real installation while services die.

For a set time several storescu senders send series that rules route to Orthanc, process with a
command module into a folder target, collect into studies, or discard; meanwhile a random
service (the supervisor included) is killed every few seconds, Orthanc is stopped for a while,
and the bookkeeper is stopped for a while. Then everything is restarted cleanly, the queues
drain, and :func:`account` compares what the senders had acknowledged with where every instance
ended: delivered (counted at Orthanc by a Lua filter that sees every C-STORE, duplicates
included, and in the target folder), discarded by rule, in ``error/`` with a reason, stuck in a
stage, or lost. Lost or stuck instances fail the soak, and so do duplicate deliveries beyond
what was in flight at the kills and outages (an interrupted instance may be sent again, a whole
task may not).

``bench/soak.py`` runs it for 10 minutes by default; ``tests/integration/test_soak.py`` for 2.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mercure.core.claims import Claim
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import TaskError
from mercure.core.heartbeat import read_heartbeats
from mercure.core.notifications.queue import queued, read_notification
from mercure.core.task import read_task
from mercure.testing.installation import BookkeeperClient, MercureProcess, copy_module, write_config
from mercure.testing.peers import Orthanc
from mercure.testing.peers.dcmtk import dcmtk_program
from mercure.testing.peers.process import peer_environment
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

log = logging.getLogger(__name__)

SUPERVISED = ("receiver", "router", "processor", "dispatcher", "cleaner")
"""Services under ``mercure run`` in the soak; the bookkeeper runs on its own, so that the
soak can keep it stopped for a while (the supervisor would restart it at once)."""

VICTIMS = (*SUPERVISED, "bookkeeper", "supervisor")

KINDS = ("direct", "processed", "study", "junk")
"""Series descriptions the soak's rules select on, and so where each instance must end."""

EXPECTED = {"direct": "orthanc", "processed": "archive", "study": "orthanc", "junk": "discard"}

QUEUE_STAGES = (Stage.INCOMING, Stage.STUDIES, Stage.PROCESSING, Stage.OUTGOING)
"""Where an instance still is when it is stuck."""


@dataclass
class SoakSettings:
    """How long and how hard."""

    seconds: float = 600.0
    senders: int = 3
    pause: float = 1.0
    """Seconds each sender waits between series: a steady stream the pipeline keeps up with
    on 2 cores, so that what is in the queues at the end is the chaos's doing, not a backlog."""
    kill_interval: tuple[float, float] = (3.0, 6.0)
    outage: tuple[float, float] = (10.0, 20.0)
    drain_timeout: float = 240.0
    seed: int = 1


# -- accounting -----------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the senders did: each acknowledged instance with where it must end."""

    expected: dict[str, str] = field(default_factory=dict)
    """SOP Instance UID -> ``orthanc``, ``archive`` or ``discard``."""
    series_of: dict[str, str] = field(default_factory=dict)
    """SOP Instance UID -> its Series Instance UID (a whole series sent twice is a failure)."""
    resent: set[str] = field(default_factory=set)
    """Instances a sender sent again because the first attempt got no answer: the receiver
    may have stored the first one, so two deliveries of these are allowed."""
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def acknowledged(self, uid: str, series_uid: str, kind: str) -> None:
        """A sender got a success status for ``uid``."""
        with self.lock:
            self.expected[uid] = EXPECTED[kind]
            self.series_of[uid] = series_uid


@dataclass
class Outcome:
    """Where instances are after the drain, by SOP Instance UID."""

    orthanc_received: Counter[str]
    """Every C-STORE Orthanc received (duplicates included)."""
    orthanc_stored: set[str]
    archive: Counter[str]
    """Occurrences in the folder target (one task folder each)."""
    discarded: set[str]
    errors: dict[str, str]
    """Instance -> the reason of the error/ folder it is in."""
    stuck: dict[str, str]
    """Instance -> the stage folder it is still in."""


@dataclass
class SoakReport:
    """The soak's figures; :attr:`passed` says whether it holds the product's promises."""

    acknowledged: int
    delivered: dict[str, int]
    discarded: int
    errors: int
    error_reasons: Counter[str]
    stuck: list[str]
    lost: list[str]
    misplaced: list[str]
    duplicates: dict[str, int]
    allowed_duplicates: int
    whole_series_resent: list[str]
    unacknowledged_delivered: int
    kills: Counter[str] = field(default_factory=Counter)
    outages: Counter[str] = field(default_factory=Counter)
    bookkeeper: dict[str, int] = field(default_factory=dict)
    folders: dict[str, int] = field(default_factory=dict)
    notifying_tasks: int = 0
    """Finished tasks of a rule with a channel (each must have its notification queued)."""
    unnotified: list[str] = field(default_factory=list)
    """Finished tasks of a rule with a channel whose completion or error notification is not
    queued (the notifier is not running in the soak: the queue keeps every notification)."""

    @property
    def duplicate_total(self) -> int:
        """Deliveries beyond the first, over both targets."""
        return sum(self.duplicates.values())

    @property
    def bookkeeper_agrees(self) -> bool:
        """The bookkeeper's task counts of the finished stages match the data folder's."""
        return all(self.bookkeeper.get(stage, 0) == n for stage, n in self.folders.items())

    @property
    def failures(self) -> list[str]:
        """Why the soak failed; empty when it passed."""
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} acknowledged instances lost, e.g. {self.lost[:3]}")
        if self.stuck:
            found.append(f"{len(self.stuck)} instances stuck, e.g. {self.stuck[:3]}")
        if self.misplaced:
            found.append(f"{len(self.misplaced)} instances ended in the wrong place")
        if self.duplicate_total > self.allowed_duplicates:
            found.append(
                f"{self.duplicate_total} duplicate deliveries, more than the "
                f"{self.allowed_duplicates} instances in flight at kills and outages"
            )
        if self.whole_series_resent:
            found.append(f"whole series delivered twice: {self.whole_series_resent[:3]}")
        if not self.bookkeeper_agrees:
            found.append(f"bookkeeper {self.bookkeeper} disagrees with folders {self.folders}")
        if self.unnotified:
            found.append(
                f"{len(self.unnotified)} tasks without their notification, e.g. "
                f"{self.unnotified[:3]}"
            )
        return found

    @property
    def passed(self) -> bool:
        """No instance lost, stuck or misplaced; duplicates within the allowance."""
        return not self.failures

    def render(self) -> str:
        """The report for people."""
        reasons = "".join(f"\n    {n:>6}  {reason}" for reason, n in self.error_reasons.items())
        lines = [
            f"instances acknowledged   {self.acknowledged}",
            "delivered                "
            + ", ".join(f"{t} {n}" for t, n in sorted(self.delivered.items())),
            f"discarded by rule        {self.discarded}",
            f"in error/                {self.errors}{reasons}",
            f"stuck                    {len(self.stuck)}",
            f"lost                     {len(self.lost)}",
            f"misplaced                {len(self.misplaced)}",
            "duplicated               "
            + ", ".join(f"{t} {n}" for t, n in sorted(self.duplicates.items()))
            + f" (allowed {self.allowed_duplicates}: in flight at kills and outages)",
            f"whole series re-sent     {len(self.whole_series_resent)}",
            f"delivered, never acked   {self.unacknowledged_delivered} (a sender gave up on it)",
            "kills                    "
            + ", ".join(f"{s} {n}" for s, n in sorted(self.kills.items())),
            "outages                  "
            + ", ".join(f"{s} {n}" for s, n in sorted(self.outages.items())),
            f"bookkeeper tasks         {self.bookkeeper}",
            f"data folder tasks        {self.folders}",
            f"notifications missing    {len(self.unnotified)} of {self.notifying_tasks} tasks",
            "PASS" if self.passed else "FAIL: " + "; ".join(self.failures),
        ]
        return "\n".join(lines)


def account(ledger: Ledger, outcome: Outcome, allowed_duplicates: int) -> SoakReport:
    """Compare what was acknowledged with where each instance is."""
    lost, misplaced, stuck = [], [], []
    delivered: Counter[str] = Counter()
    discarded = errors = 0
    reasons: Counter[str] = Counter()
    places = {
        "orthanc": outcome.orthanc_stored,
        "archive": set(outcome.archive),
        "discard": outcome.discarded,
    }
    for uid, expected in sorted(ledger.expected.items()):
        if uid in outcome.stuck:
            stuck.append(f"{uid} in {outcome.stuck[uid]}/")
        elif uid in outcome.errors:
            errors += 1
            reasons[_reason_kind(outcome.errors[uid])] += 1
        elif uid in places[expected]:
            if expected == "discard":
                discarded += 1
            else:
                delivered[expected] += 1
            if any(uid in where for name, where in places.items() if name != expected):
                misplaced.append(uid)
        elif any(uid in where for where in places.values()):
            misplaced.append(uid)
        else:
            lost.append(uid)
    duplicates = {
        "orthanc": _extra(outcome.orthanc_received, ledger.resent),
        "archive": _extra(outcome.archive, ledger.resent),
    }
    acked = set(ledger.expected)
    everywhere = set(outcome.orthanc_received) | set(outcome.archive) | outcome.discarded
    return SoakReport(
        acknowledged=len(ledger.expected),
        delivered=dict(delivered),
        discarded=discarded,
        errors=errors,
        error_reasons=reasons,
        stuck=stuck,
        lost=lost,
        misplaced=misplaced,
        duplicates=duplicates,
        allowed_duplicates=allowed_duplicates,
        whole_series_resent=_whole_series_resent(ledger, outcome),
        unacknowledged_delivered=len(everywhere - acked),
    )


def _extra(counts: Counter[str], resent: set[str]) -> int:
    """Deliveries beyond the first; one more is allowed for an instance a sender re-sent."""
    return sum(max(0, n - 1 - (uid in resent)) for uid, n in counts.items())


def _whole_series_resent(ledger: Ledger, outcome: Outcome) -> list[str]:
    """Series of more than one instance whose every instance reached a target twice."""
    by_series: dict[str, list[str]] = {}
    for uid, series_uid in ledger.series_of.items():
        by_series.setdefault(series_uid, []).append(uid)
    found = []
    for series_uid, uids in sorted(by_series.items()):
        if len(uids) < 2 or any(uid in ledger.resent for uid in uids):
            continue
        for counts in (outcome.orthanc_received, outcome.archive):
            if all(counts[uid] >= 2 for uid in uids):
                found.append(series_uid)
                break
    return found


def _reason_kind(reason: str) -> str:
    """A reason shortened for the summary (UIDs and numbers out, so alike ones group)."""
    return re.sub(r"[0-9][0-9.]{5,}", "<uid>", reason)[:160]


# -- reading the outcome --------------------------------------------------------------------


def read_outcome(data: DataFolder, archive: Path, orthanc_log: Path, orthanc: Orthanc) -> Outcome:
    """Where every instance is: targets, finished stages, queues."""
    received = Counter(orthanc_log.read_text().split()) if orthanc_log.exists() else Counter()
    # A processed instance keeps the name its module was given: <series>#<sop>.dcm.
    archive_counts: Counter[str] = Counter(
        path.stem.rpartition("#")[2] for path in archive.glob("*/*.dcm") if path.is_file()
    )
    errors: dict[str, str] = {}
    for folder in _folders(data.stage(Stage.ERROR)):
        reason = _error_reason(folder)
        for uid in _instances(folder):
            errors[uid] = reason
    stuck = {
        uid: stage.value
        for stage in QUEUE_STAGES
        for folder in _folders(data.stage(stage))
        for uid in _instances(folder)
    }
    return Outcome(
        orthanc_received=received,
        orthanc_stored=orthanc.sop_instance_uids(),
        archive=archive_counts,
        discarded={u for f in _folders(data.stage(Stage.DISCARD)) for u in _instances(f)},
        errors=errors,
        stuck=stuck,
    )


def _folders(stage: Path) -> list[Path]:
    return [p for p in stage.iterdir() if p.is_dir()] if stage.is_dir() else []


def _instances(folder: Path) -> Iterator[str]:
    """SOP Instance UIDs of the ``.dcm`` files anywhere below ``folder``."""
    for path in folder.rglob("*.dcm"):
        name = path.name
        # Processing workspaces and processed copies carry the same name: count it once.
        if not name.startswith("."):
            yield path.stem


def _error_reason(folder: Path) -> str:
    for name in ("error.json", "task.json"):
        with contextlib.suppress(OSError, ValueError):
            document = json.loads((folder / name).read_text())
            reason = document.get("reason") or document.get("info", {}).get("reason")
            if reason:
                return str(reason)
    return "(no reason recorded)"


NOTIFYING_RULES = ("direct", "processed")
"""The soak's rules with a notification channel."""


def unnotified_tasks(data: DataFolder) -> tuple[int, list[str]]:
    """How many tasks in success/ or error/ belong to a notifying rule, and those of them whose
    completion or error notification was never queued (a repeat after a kill is allowed; a
    task without one is not)."""
    queued_for = {(n.task_id, n.trigger) for n in (read_notification(p) for p in queued(data))}
    missing = []
    checked = 0
    for stage, trigger in ((Stage.SUCCESS, "completion"), (Stage.ERROR, "error")):
        for folder in _folders(data.stage(stage)):
            with contextlib.suppress(TaskError):
                task = read_task(folder)
                if task.info.applied_rule not in NOTIFYING_RULES:
                    continue
                checked += 1
                if (task.id, trigger) not in queued_for:
                    missing.append(f"{stage.value}/{task.id}")
    return checked, missing


def folder_counts(data: DataFolder) -> dict[str, int]:
    """Task folders in the finished stages (what the bookkeeper should count alike)."""
    return {
        stage.value: len(_folders(data.stage(stage)))
        for stage in (Stage.SUCCESS, Stage.DISCARD, Stage.ERROR)
    }


# -- the installation -----------------------------------------------------------------------

ORTHANC_FILTER = """
function ReceivedInstanceFilter(dicom, origin, info)
  local f = io.open("{log}", "a")
  f:write(dicom.SOPInstanceUID .. "\\n")
  f:close()
  return true
end
"""
"""Orthanc keeps one copy of an instance however often it arrives; this Lua filter sees every
C-STORE first and writes its SOP Instance UID down, so duplicate deliveries are counted."""


class Installation:
    """Orthanc, the bookkeeper, and ``mercure run`` with the soak's rules, in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.orthanc_log = root / "orthanc-received.txt"
        lua = root / "count-received.lua"
        root.mkdir(parents=True, exist_ok=True)
        lua.write_text(ORTHANC_FILTER.replace("{log}", str(self.orthanc_log)))
        self.orthanc = Orthanc(root / "orthanc", dicomweb=False, config={"LuaScripts": [str(lua)]})
        self.archive = root / "archive"
        self.receiver_port, self.bookkeeper_port = free_port(), free_port()
        config = write_config(
            root,
            receiver_port=self.receiver_port,
            bookkeeper_port=self.bookkeeper_port,
            targets={
                "pacs": {
                    "type": "dicom",
                    "host": "127.0.0.1",
                    "port": self.orthanc.dicom_port,
                    "aet_target": self.orthanc.aet,
                },
                "archive": {"type": "folder", "folder": str(self.archive)},
            },
            modules={"copier": copy_module(root)},
            rules={
                "direct": {
                    "rule": "tags.SeriesDescription == 'direct'",
                    "targets": ["pacs"],
                    "notification_channels": ["watch"],
                },
                "processed": {
                    "rule": "tags.SeriesDescription == 'processed'",
                    "action": "both",
                    "processing_module": ["copier"],
                    "targets": ["archive"],
                    "notification_channels": ["watch"],
                },
                "study": {
                    "rule": "tags.SeriesDescription == 'study'",
                    "action_trigger": "study",
                    "targets": ["pacs"],
                },
                "junk": {"rule": "tags.SeriesDescription == 'junk'", "action": "discard"},
            },
        )
        document = yaml.safe_load(config.read_text())
        document["router"]["study_complete_trigger"] = 4
        # Orthanc stays away for up to outage[1] seconds: retries must outlast it.
        document["dispatch"] = {"retry_attempts": 1000, "retry_base_delay": 0.5}
        document["dispatch"]["retry_max_delay"] = 3
        document["supervisor"]["services"] = list(SUPERVISED)
        # No notifier runs: every notification the services queue stays in the queue, where
        # the report looks for the completion or error notification of each finished task.
        document["notifications"] = {"watch": {"type": "webhook", "url": "http://127.0.0.1:9/"}}
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        self.config = config
        self.data = DataFolder(document["data_dir"])
        self.bookkeeper = MercureProcess(
            "bookkeeper", config, health_url=f"http://127.0.0.1:{self.bookkeeper_port}/health"
        )
        self.mercure = MercureProcess("run", config, listen_port=self.receiver_port)

    def start(self) -> None:
        """Start Orthanc, the bookkeeper and the supervisor with its services."""
        self.orthanc.start()
        self.bookkeeper.start()
        self.mercure.start()

    def ensure_running(self) -> None:
        """Start whatever is not running (after the chaos)."""
        for peer in (self.orthanc, self.bookkeeper, self.mercure):
            if not peer.running:
                peer.start()

    def stop(self) -> None:
        """Stop everything (the supervisor stops its services first)."""
        with contextlib.suppress(Exception):
            self.mercure.shutdown(60)
        for peer in (self.mercure, self.bookkeeper):
            with contextlib.suppress(Exception):
                peer.stop()
        self.orthanc.close()

    def service_pid(self, name: str) -> int | None:
        """The PID of a running supervised service, from its heartbeat."""
        for beat in read_heartbeats(self.data.run_dir):
            if beat.service == name and beat.state == "running" and _alive(beat.pid):
                return beat.pid
        return None

    def in_flight(self) -> int:
        """Tasks a dispatcher is sending now (claimed in outgoing/): each has at most one
        instance on the wire to its one target, which may arrive twice after a kill."""
        return sum(Claim.is_claimed(f) for f in _folders(self.data.stage(Stage.OUTGOING)))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# -- senders and chaos ----------------------------------------------------------------------

_SENDING = re.compile(r"Sending file: (\S+)")


def send_acknowledged(port: int, files: list[Path], aet: str) -> set[Path]:
    """Send ``files`` with storescu on one association; the files it got Success for."""
    command = [
        dcmtk_program("storescu"), "-v", "-aet", aet, "-aec", "MERCURE",
        "127.0.0.1", str(port), *map(str, files),
    ]  # fmt: skip
    acknowledged: set[Path] = set()
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=peer_environment(),
    ) as sender:
        assert sender.stdout is not None
        current: Path | None = None
        for line in sender.stdout:
            if match := _SENDING.search(line):
                current = Path(match.group(1))
            elif "Received Store Response (Success)" in line and current is not None:
                acknowledged.add(current)
    return acknowledged


class Sender(threading.Thread):
    """Sends series after series until stopped; re-sends what got no answer, as a modality
    does."""

    def __init__(
        self,
        number: int,
        port: int,
        folder: Path,
        ledger: Ledger,
        stop: threading.Event,
        pause: float = 1.0,
    ) -> None:
        super().__init__(name=f"sender {number}", daemon=True)
        self.number, self.port, self.folder = number, port, folder
        self.ledger, self.stopping = ledger, stop
        self.rng = random.Random(number)
        self.pause = pause
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for batch in itertools.count():
                if self.stopping.wait(self.pause if batch else 0):
                    return
                self._send_batch(batch)
        except BaseException as exc:  # reported by the soak, not swallowed
            self.error = exc

    def _send_batch(self, batch: int) -> None:
        kind = KINDS[(batch + self.number) % len(KINDS)]
        seed = 1_000_000 * (self.number + 1) + batch
        # A study arrives as two series; the others as one.
        for series_number in range(1, 3 if kind == "study" else 2):
            series = generate_series(
                self.folder / f"{batch}-{series_number}",
                "tiny",
                self.rng.randint(3, 8),
                seed=seed,
                series_number=series_number,
                series_description=kind,
            )
            uid_of = {i.path: i.sop_instance_uid for i in series.instances}
            self._deliver(list(series.paths), uid_of, series.series_uid, kind)

    def _deliver(
        self, files: list[Path], uid_of: Mapping[Path, str], series_uid: str, kind: str
    ) -> None:
        pending, attempts = list(files), 0
        while pending and not (attempts and self.stopping.is_set()):
            if attempts:
                with self.ledger.lock:
                    self.ledger.resent.update(uid_of[p] for p in pending)
                time.sleep(0.5)
            attempts += 1
            acknowledged = send_acknowledged(self.port, pending, f"SOAK{self.number}")
            with self.ledger.lock:
                self.ledger.sent += len(pending)
            for path in acknowledged:
                self.ledger.acknowledged(uid_of[path], series_uid, kind)
            pending = [p for p in pending if p not in acknowledged]
        for path in files:
            path.unlink(missing_ok=True)


@dataclass
class Chaos:
    """Kills and outages, and what was in flight at each."""

    kills: Counter[str] = field(default_factory=Counter)
    outages: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0


def run_chaos(
    site: Installation,
    settings: SoakSettings,
    deadline: float,
    chaos: Chaos,
    say: Callable[[str], None],
) -> None:
    """Until ``deadline`` (monotonic): a random victim every few seconds; Orthanc and the
    bookkeeper each stopped twice for a while, at fixed points of the run."""
    rng = random.Random(settings.seed)
    start = time.monotonic()
    plan = sorted(
        [
            (0.20 * settings.seconds, "orthanc"),
            (0.35 * settings.seconds, "bookkeeper-outage"),
            (0.60 * settings.seconds, "orthanc"),
            (0.75 * settings.seconds, "bookkeeper-outage"),
        ]
    )
    outage_end: dict[str, float] = {}
    next_kill = start + rng.uniform(*settings.kill_interval)
    while (now := time.monotonic()) < deadline:
        time.sleep(0.2)
        for name, until in list(outage_end.items()):
            if now >= until:
                say(f"{name}: back")
                (site.orthanc if name == "orthanc" else site.bookkeeper).start()
                del outage_end[name]
        if plan and now - start >= plan[0][0]:
            _, what = plan.pop(0)
            name = "orthanc" if what == "orthanc" else "bookkeeper"
            if name not in outage_end:
                if name == "orthanc":
                    chaos.in_flight += site.in_flight()
                    site.orthanc.stop()
                else:
                    site.bookkeeper.stop(graceful=False)
                length = rng.uniform(*settings.outage)
                outage_end[name] = now + length
                chaos.outages[name] += 1
                say(f"{name}: stopped for {length:.0f} s")
        if now >= next_kill:
            next_kill = now + rng.uniform(*settings.kill_interval)
            victim = rng.choice(VICTIMS)
            if _kill(site, victim, outage_end, chaos):
                say(f"killed {victim}")
    for name in outage_end:
        (site.orthanc if name == "orthanc" else site.bookkeeper).start()


def _kill(site: Installation, victim: str, outage_end: Mapping[str, float], chaos: Chaos) -> bool:
    if victim == "supervisor":
        if not site.mercure.running:
            return False
        chaos.in_flight += site.in_flight()
        site.mercure.crash()  # its services see their parent die and stop after their unit
        site.mercure.start()  # as systemd's Restart=always would
    elif victim == "bookkeeper":
        if "bookkeeper" in outage_end or not site.bookkeeper.running:
            return False
        site.bookkeeper.stop(graceful=False)
        site.bookkeeper.start()
    else:
        pid = site.service_pid(victim)
        if pid is None:
            return False
        if victim == "dispatcher":
            chaos.in_flight += site.in_flight()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    chaos.kills[victim] += 1
    return True


# -- the whole run --------------------------------------------------------------------------


def drained(data: DataFolder) -> bool:
    """No task or series left in a queue (error/ and the finished stages may hold any): no
    visible folder, and no file in the services' hidden work folders (``.receiving`` holds
    an empty staging folder per running receiver)."""
    for stage in QUEUE_STAGES:
        for folder in _folders(data.stage(stage)):
            if not folder.name.startswith("."):
                return False
            if any(path.is_file() for path in folder.rglob("*")):
                return False
    return True


def bookkeeper_counts(client: BookkeeperClient) -> dict[str, int]:
    """Tasks by state in the bookkeeper, for the finished stages."""
    states: dict[str, int] = client.get("queues")["tasks_by_state"]
    return {state: states.get(state, 0) for state in ("success", "discard", "error")}


def run_soak(root: Path, settings: SoakSettings, say: Callable[[str], None] = print) -> SoakReport:
    """Run the soak in ``root`` (kept for inspection) and return its report."""
    site = Installation(root)
    ledger, chaos, stop = Ledger(), Chaos(), threading.Event()
    site.start()
    try:
        senders = [
            Sender(n, site.receiver_port, root / f"sender{n}", ledger, stop, settings.pause)
            for n in range(settings.senders)
        ]
        for sender in senders:
            sender.start()
        say(f"soak: {settings.senders} senders for {settings.seconds:g} s, services dying")
        # In this thread: the peers it restarts die with the thread that started them
        # (PR_SET_PDEATHSIG belongs to the starting thread), and this one lives to the end.
        run_chaos(site, settings, time.monotonic() + settings.seconds, chaos, say)
        stop.set()
        for sender in senders:
            sender.join(120)
            if sender.error is not None:
                raise RuntimeError(f"{sender.name} failed") from sender.error
        say(f"chaos over; {len(ledger.expected)} acknowledged; draining")
        site.ensure_running()
        began = time.monotonic()
        with contextlib.suppress(AssertionError):
            wait_until(lambda: drained(site.data), timeout=settings.drain_timeout, interval=1)
        say(
            f"queues drained in {time.monotonic() - began:.0f} s"
            if drained(site.data)
            else "queues did not drain"
        )
        client = BookkeeperClient(site.bookkeeper_port)
        try:
            with contextlib.suppress(AssertionError):
                # Services deliver their last events within a few seconds.
                wait_until(
                    lambda: bookkeeper_counts(client) == folder_counts(site.data),
                    timeout=60,
                    interval=1,
                )
            report = account(
                ledger,
                read_outcome(site.data, site.archive, site.orthanc_log, site.orthanc),
                chaos.in_flight,
            )
            report.bookkeeper = bookkeeper_counts(client)
        finally:
            client.close()
        report.folders = folder_counts(site.data)
        report.notifying_tasks, report.unnotified = unnotified_tasks(site.data)
        report.kills, report.outages = chaos.kills, chaos.outages
        return report
    finally:
        stop.set()
        site.stop()
