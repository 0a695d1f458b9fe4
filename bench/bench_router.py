"""Measure the router (issue 4): decision latency, and its cost with thousands of series waiting.

1. **Decision latency**: a real `mercure router` process with 200 rules; a 1000-instance
   series is placed into ``incoming/`` as the receiver does (hard links, journal, tags, shared
   series lock). Measured: from the end of the quiet period (time of the last instance plus
   ``series_complete_trigger``) to the task appearing in ``outgoing/`` (seen by inotify).
   Goal: under 100 ms.
2. **With 10,000 series waiting**: ``incoming/`` holds 10,000 series that are not complete
   (their sender has a long quiet time). Measured: the CPU time of the start-up scan and of
   one periodic rescan (the router in this process), and the CPU time per routed series of a
   `mercure router` process routing further series meanwhile (from /proc/<pid>/stat).
   Goal: a rescan of 10,000 series under 1 s of CPU.

    .venv/bin/python bench/bench_router.py [--instances 1000] [--rules 200] [--rounds 5]
        [--waiting 10000] [--routed 100] [--quiet 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mercure.core.config import load_config
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.dicomtags import tags_from_dicom
from mercure.core.events import EventClient, Outbox
from mercure.core.heartbeat import read_heartbeats
from mercure.core.inotify import IN_MOVED_TO, Inotify
from mercure.router.router import Router
from mercure.router.simulate import IncomingWriter
from mercure.testing.ports import free_port
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
WAITING_AET = "WAITINGCT"


def rules_document(count: int) -> str:
    """``count`` rules: all but the last are false for the bench series, so all are evaluated."""
    lines = ["rules:"]
    shapes = [
        "tags.Modality == 'XA{n}'",
        "'HEAD{n}' in tags.StudyDescription.upper() and tags.Modality == 'CT'",
        "tags.SenderAET in ('CT{n}', 'MR{n}', 'US{n}')",
        "search('(?i)protocol{n}', tags.SeriesDescription)",
        "float(tags.SliceThickness) > 100 + {n}",
        "tags.BodyPartExamined == 'PART{n}'",
    ]
    for n in range(count - 1):
        rule = shapes[n % len(shapes)].format(n=n)
        lines.append(f'  rule{n:03d}: {{rule: "{rule}", targets: pacs}}')
    lines.append("  last: {rule: \"tags.Modality == 'CT'\", targets: pacs}")
    return "\n".join(lines) + "\n"


def write_config(root: Path, *, quiet: float, rules: int, rescan: float = 3600) -> Path:
    """A configuration for the bench in ``root``."""
    path = root / "mercure.yaml"
    path.write_text(
        f"""
data_dir: data
router:
  series_complete_trigger: {quiet}
  series_complete_trigger_by_calling_aet: {{{WAITING_AET}: 86400}}
  rescan_interval: {rescan}
targets:
  pacs: {{type: dicom, host: 127.0.0.1, port: 104}}
bookkeeper: {{port: {free_port()}}}
supervisor: {{heartbeat_interval: 1}}
logging: {{level: WARNING}}
"""
        + rules_document(rules)
    )
    DataFolder(root / "data").ensure()
    return path


class RouterProcess:
    """`mercure router` as a child process."""

    def __init__(self, config: Path, data: DataFolder) -> None:
        self.data = data
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mercure", "router", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        """Until its heartbeat says running."""
        pid = self.process.pid
        wait_until(
            lambda: any(
                b.pid == pid and b.state == "running" for b in read_heartbeats(self.data.run_dir)
            ),
            timeout=timeout,
            interval=0.05,
        )

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        """SIGTERM, then wait."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def place(writer: IncomingWriter, source: GeneratedSeries, series_uid: str, aet: str) -> float:
    """Place ``source``'s files as series ``series_uid``; the time of its last instance."""
    with writer.association(calling_aet=aet) as association:
        for n, instance in enumerate(source.instances):
            association.store(instance.path, series_uid, f"{series_uid}.{n + 1}")
        last = os.stat(writer.incoming / series_uid).st_mtime
    return last


def wait_for_task(inotify: Inotify, timeout: float = 60) -> float:
    """Block until a task is renamed into the watched outgoing/; the time it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([inotify.fileno()], [], [], 0.5)
        if ready:
            seen = time.time()
            if any(e.mask & IN_MOVED_TO for e in inotify.read_events()):
                return seen
    raise TimeoutError("no task appeared in outgoing/")


def bench_latency(
    root: Path, source: GeneratedSeries, args: argparse.Namespace
) -> dict[str, float]:
    """Part 1: end of quiet period -> task in outgoing/."""
    config = write_config(root, quiet=args.quiet, rules=args.rules)
    data = DataFolder(root / "data")
    writer = IncomingWriter(data.root, link=True)
    router = RouterProcess(config, data)
    latencies = []
    try:
        router.wait_ready()
        inotify = Inotify()
        inotify.add_watch(data.stage(Stage.OUTGOING), IN_MOVED_TO)
        for round_number in range(args.rounds):
            series_uid = f"{UID_ROOT}.1.{round_number + 1}"
            last = place(writer, source, series_uid, "BENCHCT")
            seen = wait_for_task(inotify)
            latencies.append((seen - (last + args.quiet)) * 1000)
        inotify.close()
    finally:
        router.stop()
    return {
        "median_ms": statistics.median(latencies),
        "max_ms": max(latencies),
        "min_ms": min(latencies),
    }


def make_waiting(data: DataFolder, source: GeneratedSeries, count: int) -> None:
    """``count`` one-instance series in incoming/ from a slow sender (not complete for a day)."""
    incoming = data.stage(Stage.INCOMING)
    instance = source.instances[0].path
    tags = tags_from_dicom(instance)
    tags.update(SenderAET=WAITING_AET, ReceiverAET="MERCURE", SenderAddress="127.0.0.1")
    tags_text = json.dumps(tags)
    for n in range(count):
        series_uid = f"{UID_ROOT}.2.{n + 1}"
        folder = incoming / series_uid
        folder.mkdir()
        os.link(instance, folder / f"{series_uid}.1.dcm")
        line = {
            "sop": f"{series_uid}.1",
            "calling_aet": WAITING_AET,
            "called_aet": "MERCURE",
            "address": "127.0.0.1",
            "listener": "default",
            "assoc": "bench",
            "time": time.time(),
            "size": 1,
            "ts": "1.2.840.10008.1.2.1",
        }
        (folder / "journal.jsonl").write_text(json.dumps(line) + "\n")
        (folder / "tags.json").write_text(tags_text)


def bench_waiting(
    root: Path, source: GeneratedSeries, args: argparse.Namespace
) -> dict[str, float]:
    """Part 2: start-up scan and rescan CPU, and CPU per routed series, with series waiting."""
    config = write_config(root, quiet=0.2, rules=args.rules, rescan=3600)
    data = DataFolder(root / "data")
    started = time.perf_counter()
    make_waiting(data, source, args.waiting)
    created = time.perf_counter() - started

    loaded = load_config(config)
    outbox = Outbox(data.outbox_dir, "router@bench")
    router = Router(data, loaded, EventClient(outbox, "router", "bench"))
    cpu = time.process_time()
    router.start()
    start_cpu = time.process_time() - cpu
    rescans = []
    for _ in range(5):
        cpu = time.process_time()
        router.rescan()
        rescans.append(time.process_time() - cpu)
    assert len(router.tracker) == args.waiting
    outbox.close()

    process = RouterProcess(config, data)
    writer = IncomingWriter(data.root, link=True)
    small = GeneratedSeries(**{**source.__dict__, "instances": source.instances[:10]})
    try:
        process.wait_ready()
        startup_cpu = process.cpu_seconds()
        for n in range(args.routed):
            place(writer, small, f"{UID_ROOT}.3.{n + 1}", "BENCHCT")
        wait_until(
            lambda: len(data.entries(Stage.OUTGOING)) >= args.routed, timeout=120, interval=0.05
        )
        routed_cpu = process.cpu_seconds() - startup_cpu
    finally:
        process.stop()
    return {
        "create_s": created,
        "scan_at_start_cpu_s": start_cpu,
        "rescan_cpu_s": statistics.median(rescans),
        "service_startup_cpu_s": startup_cpu,
        "cpu_per_routed_series_ms": routed_cpu / args.routed * 1000,
    }


def main() -> None:
    """Run both parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--kind", default="tiny", help="series kind (the router reads no pixels)")
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quiet", type=float, default=1.0, help="series_complete_trigger (s)")
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--routed", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-router-") as temp:
        root = Path(temp)
        source = generate_series(root / "source", args.kind, args.instances, modality="CT")
        (root / "latency").mkdir()
        latency = bench_latency(root / "latency", source, args)
        print(
            f"decision latency, {args.instances} instances, {args.rules} rules, "
            f"{args.rounds} rounds: median {latency['median_ms']:.1f} ms, "
            f"min {latency['min_ms']:.1f} ms, max {latency['max_ms']:.1f} ms (goal < 100 ms)"
        )
        (root / "waiting").mkdir()
        waiting = bench_waiting(root / "waiting", source, args)
        print(
            f"{args.waiting} series waiting: start-up scan {waiting['scan_at_start_cpu_s']:.2f} s "
            f"CPU, rescan {waiting['rescan_cpu_s']:.3f} s CPU (goal < 1 s); "
            f"service start-up {waiting['service_startup_cpu_s']:.2f} s CPU; "
            f"{waiting['cpu_per_routed_series_ms']:.1f} ms CPU per routed 10-instance series"
        )
        print(json.dumps({"latency": latency, "waiting": waiting}, indent=1))


if __name__ == "__main__":
    main()
