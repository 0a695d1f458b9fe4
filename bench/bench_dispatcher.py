"""The dispatcher's `dicom` target against DCMTK's senders: same data, same storescp, one run.

Cases, alternating round by round so that both sides see the same machine state:

- one association: `dcmsend` -> storescp, and the dispatcher's delivery engine (dicom target,
  parallel_associations 1) -> storescp;
- four associations: four `storescu` processes at once (a quarter of the files each) ->
  `storescp --fork`, and the engine with parallel_associations 4 -> `storescp --fork`;
- peak memory: `mercure dispatcher` (a child process) sends a large series (default 2 GB) to
  Orthanc by DICOMweb; its peak RSS comes from wait4().

The engine is measured in-process from claim to `success/`: it reads the files' meta, sends,
records every confirmed instance in the progress journal and writes task.json, as in service.

    .venv/bin/python bench/bench_dispatcher.py [--ct 1000] [--tiny 5000] [--rounds 3]
        [--dicomweb-gb 2] [--work DIR]

Prints instances/s per case, the sender's CPU time per instance (user + system, from
getrusage: the bench process for the engine, the reaped children for DCMTK's senders; the
receiving storescp is not included) and the ratio mercure / DCMTK.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvloop
import yaml

from mercure.core.claims import Claim
from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import EventClient, Outbox
from mercure.core.task import Task, TaskDispatch, TaskInfo, new_task_id, write_task
from mercure.dispatcher.engine import DeliveryEngine
from mercure.testing.peers import Orthanc, StoreSCP
from mercure.testing.peers.dcmtk import dcmsend, storescu
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until


def queue_task(data: DataFolder, files: list[Path], target: str) -> Path:
    """A task in outgoing/ with hard links to ``files``."""
    task_id = new_task_id()
    folder = data.stage(Stage.OUTGOING) / task_id
    folder.mkdir()
    for path in files:
        os.link(path, folder / path.name)
    task = Task(
        id=task_id,
        info=TaskInfo(action="route", uid="bench"),
        dispatch=TaskDispatch(target_name=[target]),
    )
    write_task(folder, task)
    return folder


Timing = tuple[float, float]
"""Seconds elapsed and CPU seconds (user + system) of the sender."""


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def engine_send(data: DataFolder, files: list[Path], port: int, associations: int) -> Timing:
    """Seconds and CPU seconds the delivery engine takes to deliver ``files`` to storescp on
    ``port`` (this process's CPU: the engine and its association threads)."""
    config = MercureConfig.model_validate(
        {
            "data_dir": str(data.root),
            "targets": {
                "scp": {
                    "type": "dicom",
                    "host": "127.0.0.1",
                    "port": port,
                    "aet_target": "STORESCP",
                    "parallel_associations": associations,
                }
            },
            "dispatch": {"retry_attempts": 1},
        }
    )
    folder = queue_task(data, files, "scp")
    outbox = Outbox(data.outbox_dir, f"bench@{os.getpid()}")
    engine = DeliveryEngine(data, EventClient(outbox, "dispatcher", "bench"))

    async def run() -> Path:
        claim = Claim.take(folder)
        try:
            return await engine.run(claim, config)
        finally:
            claim.release()

    cpu, started = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    # On uvloop like `mercure dispatcher` (Service.fast_event_loop).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        where = runner.run(run())
    elapsed, cpu = time.perf_counter() - started, _cpu(resource.RUSAGE_SELF) - cpu
    outbox.close()
    if where.parent.name != Stage.SUCCESS:
        raise SystemExit(f"the engine did not deliver: task in {where}")
    return elapsed, cpu


def dcmsend_all(port: int, files: list[Path]) -> Timing:
    """Seconds and CPU seconds one ``dcmsend`` takes to send ``files``."""
    return _timed(lambda: dcmsend(port, *files))


def storescu_parallel(port: int, files: list[Path], count: int) -> Timing:
    """Seconds and CPU seconds ``count`` storescu processes take, each sending an interleaved
    share."""
    shares = [files[i::count] for i in range(count)]

    def run() -> None:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda share: storescu(port, *share, called_aet="STORESCP"), shares))

    return _timed(run)


def measure(
    name: str, count: int, rounds: int, cases: dict[str, Callable[[], Timing]]
) -> dict[str, float]:
    """Median instances/s of each case over ``rounds``, interleaved; prints them with the
    median sender CPU per instance."""
    timings: dict[str, list[Timing]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, run in cases.items():
            timings[case].append(run())
    rates = {
        case: count / statistics.median(seconds for seconds, _ in values)
        for case, values in timings.items()
    }
    print(f"\n{name} ({count} instances, median of {rounds}; load {os.getloadavg()[0]:.1f})")
    for case, rate in rates.items():
        cpu = statistics.median(cpu for _, cpu in timings[case]) / count * 1e6
        print(f"  {case:<44} {rate:8.0f} instances/s  sender CPU {cpu:5.0f} us/instance")
    return rates


_outputs = itertools.count()


def with_scp(work: Path, fork: bool, run: Callable[[int], Timing]) -> Callable[[], Timing]:
    """A case that starts a fresh storescp, in a new empty folder, around ``run``.

    Earlier outputs are moved aside into ``work/trash`` (removed at the end), not deleted
    between cases: on ext4, creating thousands of files right after thousands were deleted
    costs a scan past every recently freed inode, and storescp then took 1100 instead of 8000
    tiny instances/s, whichever sender ran after a deletion.
    """

    def case() -> Timing:
        output = work / "trash" / f"scp-out-{next(_outputs)}"
        # Each case starts with nothing dirty in the page cache: otherwise the writeback of the
        # previous case's files (300 MB of CT) throttles whichever case comes next.
        os.sync()
        with StoreSCP(output, fork=fork) as scp:
            return run(scp.port)

    return case


def dicomweb_peak_rss(work: Path, gigabytes: float) -> None:
    """Peak RSS of `mercure dispatcher` sending a large series to Orthanc by STOW-RS."""
    count = max(1, int(gigabytes * 2000))  # a CT instance is ~0.5 MB
    print(f"\ngenerating {count} CT instances (~{gigabytes:g} GB) for the DICOMweb case ...")
    series = generate_series(work / f"big-{count}", "ct", count, seed=3)
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    data = DataFolder(site / "data")
    data.ensure()
    with Orthanc(work / "orthanc") as orthanc:
        config = site / "mercure.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(data.root),
                    "targets": {"web": {"type": "dicomweb", "url": orthanc.dicomweb_url}},
                }
            )
        )
        folder = queue_task(data, series.paths, "web")
        started = time.perf_counter()
        command = [sys.executable, "-m", "mercure", "dispatcher", "--config", str(config)]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        success = data.stage(Stage.SUCCESS) / folder.name
        try:
            wait_until(success.exists, timeout=3600, message="the DICOMweb task was delivered")
            elapsed = time.perf_counter() - started
        finally:
            child.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        stored = len(orthanc.instances())
    print(
        f"  dispatcher -> Orthanc STOW-RS: {count} instances, {series.total_bytes / 2**30:.2f} GiB "
        f"in {elapsed:.1f} s, Orthanc stored {stored}; dispatcher peak RSS "
        f"{usage.ru_maxrss / 1024:.0f} MB"
    )


def main() -> None:
    """Run the benchmark and print the ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ct", type=int, default=1000, help="CT instances (0.5 MB each)")
    parser.add_argument("--tiny", type=int, default=5000, help="tiny instances (9 KB each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dicomweb-gb", type=float, default=2.0, help="0 skips the RSS case")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-dispatcher-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}; generating data ...")
    data = DataFolder(work / "data")
    data.ensure()
    for kind, count in (("ct", args.ct), ("tiny", args.tiny)):
        files = generate_series(work / f"{kind}-{count}", kind, count, seed=1).paths
        single = measure(
            f"{kind}: one association",
            count,
            args.rounds,
            {
                "dcmsend -> storescp": with_scp(
                    work, False, functools.partial(dcmsend_all, files=files)
                ),
                "mercure dicom target -> storescp": with_scp(
                    work, False, functools.partial(engine_send, data, files, associations=1)
                ),
            },
        )
        four = measure(
            f"{kind}: four associations to storescp --fork",
            count,
            args.rounds,
            {
                "4 x storescu -> storescp --fork": with_scp(
                    work, True, functools.partial(storescu_parallel, files=files, count=4)
                ),
                "mercure, 4 associations -> storescp --fork": with_scp(
                    work, True, functools.partial(engine_send, data, files, associations=4)
                ),
            },
        )
        one_ratio = single["mercure dicom target -> storescp"] / single["dcmsend -> storescp"]
        four_ratio = (
            four["mercure, 4 associations -> storescp --fork"]
            / four["4 x storescu -> storescp --fork"]
        )
        print(f"  ratio mercure / dcmsend (1 association):      {one_ratio:.2f}")
        print(f"  ratio mercure / 4 x storescu (4 associations): {four_ratio:.2f}")
        data.stage(Stage.SUCCESS).rename(work / "trash" / f"success-{kind}")
        data.stage(Stage.SUCCESS).mkdir()
    if args.dicomweb_gb > 0:
        dicomweb_peak_rss(work, args.dicomweb_gb)
    shutil.rmtree(work / "trash", ignore_errors=True)


def _timed(run: Callable[[], object]) -> Timing:
    """Seconds ``run`` takes and the CPU seconds of the child processes it waited for."""
    cpu, started = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    run()
    return time.perf_counter() - started, _cpu(resource.RUSAGE_CHILDREN) - cpu


if __name__ == "__main__":
    main()
