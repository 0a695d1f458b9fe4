"""`mercure receiver` against DCMTK's storescp: same data, same machine, one run, interleaved.

DCMTK's storescu sends the same folders to both receivers, alternating round by round:

- one association: storescu -> storescp, and storescu -> mercure receiver;
- four (or, with ``--associations 4,8``, eight) associations: as many storescu processes at
  once -> `storescp --fork`, and -> mercure (``receiver.processes`` from ``--processes``,
  default ``auto``);
- a single large multi-frame instance, to measure the receiver's peak memory (VmHWM).

The receiver runs with its default settings (fsync before every acknowledgement, journal and
tags written); storescp writes files without fsync. `--no-fsync` also measures the receiver
with fsync off, to show what the disk flush costs on this machine.

With a C compiler on the machine, storescp also runs a second time made durable: a small
LD_PRELOAD shim (bench/fsync_on_close.c) fsyncs each file before storescp closes it and so
before it answers, which compares like with like.

The "flush floor" cases make the same number of files of the same size durable the way the
receiver does (create, write, rename, fsync), from 1 and 4 threads, with no network and no
DICOM: the disk's own limit. From it the script prints what a receiver exactly as fast as
storescp, but flushing each instance before answering, would reach: the ceiling for any
receiver that keeps the durability promise on this disk.

    .venv/bin/python bench/bench_receiver.py [--ct 1000] [--tiny 5000] [--rounds 3] [--big-mb 1024]
        [--associations 4,8] [--processes auto] [--load] [--balanced]

With ``--load`` the cases with several associations run a second time while a CPU load runs
beside them (one busy-looping process per core, at normal priority: what a second benchmark or
a processing module does to the machine), and the ratios are printed for both runs. Under load
every process gets its share of the CPU, so `storescp --fork` with N associations has N shares
and the receiver has one per receiver process: the case ``receiver.processes`` is for.

Run it in a folder (``--work``) where nothing was deleted in the last minutes: on ext4 without a
journal, creating a file after many deletions in the same block group takes up to 300 µs
instead of 5 µs for up to six minutes (the file system holds freed inodes back), and which side's
folder lands there decides the ratio. The script's own clean-up, and a test suite's, cause it.

With ``--balanced`` the parallel cases also run against one single-process receiver per
association, each sender to its own (on one data folder): every association alone in its process,
as `storescp --fork` has them. ``receiver.processes`` spreads associations by a hash
(SO_REUSEPORT), so this is what a perfectly even spread would reach: the bound for that design.

Prints instances/s per case and the ratio mercure / storescp, and what the receiver's check of
each dataset's element structure costs: the scanner run alone over the same instances, fed in
the chunks storescu's PDUs make, with and without the check, against the receiver's own CPU time
per instance (read from /proc while it received them on one association).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mercure.core.ingest.placement import SCANNED_TAGS
from mercure.dicomnet.filemeta import read_file_meta
from mercure.dicomnet.scanner import new_scanner
from mercure.testing.peers import StoreSCP
from mercure.testing.peers.dcmtk import dcmtk_program
from mercure.testing.peers.process import peer_environment
from mercure.testing.receiver import RunningReceiver, receiver_config, start_receiver
from mercure.testing.series import generate_series


def send(port: int, folders: list[Path], called_aet: str) -> float:
    """Send each folder on its own association, all at once; seconds until all are done."""
    started = time.perf_counter()
    senders = [
        subprocess.Popen(
            [
                dcmtk_program("storescu"),
                "-aec",
                called_aet,
                "+sd",
                "+r",
                "127.0.0.1",
                str(port),
                str(folder),
            ],
            env=peer_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for folder in folders
    ]
    results = [sender.communicate() for sender in senders]
    elapsed = time.perf_counter() - started
    if any(sender.returncode for sender in senders):
        errors = "".join(out for out, _ in results)
        raise SystemExit(f"storescu to port {port} failed:\n{errors}")
    return elapsed


def send_each(receivers: list[RunningReceiver], folders: list[Path]) -> float:
    """Send each folder to its own receiver, all at once; seconds until all are done."""
    started = time.perf_counter()
    with ThreadPoolExecutor(len(folders)) as pool:
        list(
            pool.map(
                lambda pair: send(pair[0].port, [pair[1]], "MERCURE"),
                zip(receivers, folders, strict=False),
            )
        )
    return time.perf_counter() - started


def build_fsync_shim(work: Path) -> Path | None:
    """Compile bench/fsync_on_close.c into ``work``; None without a C compiler."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    shim = work / "fsync_on_close.so"
    source = Path(__file__).with_name("fsync_on_close.c")
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(shim), str(source), "-ldl"], check=True
    )
    return shim


SLOW_CREATE_US = 50.0
"""Above this, creating a file in a side's folder is not the file system's normal cost (5-10 µs
here) but ext4 without a journal skipping inodes freed in the last minutes (see the docstring)."""


def creation_cost(folder: Path, trash: Path, count: int = 200) -> float:
    """Median µs of one ``open(O_CREAT)`` of a new file in ``folder``. The files are moved into
    ``trash``, not deleted: deleting them would slow the next creations there."""
    probe = folder / ".creation-probe"
    probe.mkdir(parents=True, exist_ok=True)
    times: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        fd = os.open(probe / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        times.append(time.perf_counter() - started)
        os.close(fd)
    probe.rename(trash / f"probe-{time.time_ns()}")
    return 1e6 * statistics.median(times)


def check_file_creation(folders: dict[str, Path], trash: Path) -> None:
    """Print what creating a file costs in each side's folder, and warn when it is slow in one:
    then the ratios measure where the folders landed on the disk, not the receivers."""
    costs = {side: creation_cost(folder, trash) for side, folder in folders.items()}
    shown = ", ".join(f"{side} {cost:.0f} µs" for side, cost in costs.items())
    print(f"creating a file (median of 200): {shown}")
    slow = [side for side, cost in costs.items() if cost > SLOW_CREATE_US]
    if slow:
        print(
            f"WARNING: creating a file is slow for {', '.join(slow)} (over {SLOW_CREATE_US:.0f} "
            "µs): many files were deleted on this file system in the last minutes (ext4 without "
            "a journal holds their inodes back). The ratios then measure where each side's folder "
            "landed on the disk as much as the receivers: wait a few minutes, or pass --work on "
            "a folder away from the deletions."
        )


def flush_floor(folder: Path, content: bytes, count: int, threads: int) -> float:
    """Seconds to make ``count`` files of ``content`` durable the way the receiver does (create
    in a staging folder, write, rename into place, fsync), from ``threads`` threads, with no
    network and no DICOM: the disk's own limit for a receiver that flushes every instance."""
    staging = folder / ".staging"
    staging.mkdir(parents=True, exist_ok=True)

    def work(thread: int) -> None:
        for i in range(thread, count, threads):
            temp = staging / f"{i}.part"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, content)
                os.rename(temp, folder / f"{i}.dcm")
                os.fsync(fd)
            finally:
                os.close(fd)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return time.perf_counter() - started


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and its live children have used so far (the
    receiver with several processes: the parent and its receivers)."""
    total = 0.0
    for one in (pid, *children_of(pid)):
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


class CpuLoad:
    """One busy-looping process per core, at normal priority, while the context is open."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._running: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> CpuLoad:
        self._running = [
            subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(self.processes)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._running:
            process.kill()
            process.wait()


def with_cpu(run: Callable[[], float], pid: int, spent: list[float]) -> Callable[[], float]:
    """``run``, appending the CPU seconds process ``pid`` used meanwhile to ``spent``."""

    def case() -> float:
        before = process_cpu(pid)
        elapsed = run()
        spent.append(process_cpu(pid) - before)
        return elapsed

    return case


def scanner_cpu(datasets: list[tuple[str, bytes]], *, check: bool, chunk: int = 16372) -> float:
    """CPU seconds per instance of the receiver's scanner alone (best of 5 passes), fed the
    datasets in ``chunk``-byte pieces as P-DATA delivers them (storescu: 16 KB PDUs)."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for syntax, data in datasets:
            view = memoryview(data)
            scanner = new_scanner(syntax, SCANNED_TAGS, check_structure=check)
            for start in range(0, len(view), chunk):
                if scanner.feed(view[start : start + chunk]):
                    break
            scanner.finish()
        best = min(best, time.process_time() - started)
    return best / len(datasets)


def print_check_cost(folder: Path, receiver_cpu: float) -> None:
    """The structure check's CPU per instance beside the receiver's CPU per instance."""
    datasets = []
    for path in sorted(folder.glob("*.dcm")):
        meta = read_file_meta(path)
        datasets.append((meta.transfer_syntax_uid, path.read_bytes()[meta.dataset_offset :]))
    checked = scanner_cpu(datasets, check=True)
    tags_only = scanner_cpu(datasets, check=False)
    check = max(0.0, checked - tags_only)
    if receiver_cpu <= 0:
        # /proc counts CPU in clock ticks (10 ms): a few instances may not reach one.
        print(
            f"  structure check: {check * 1e6:.1f} us/instance, the whole scanner "
            f"{checked * 1e6:.1f} us (the receiver's CPU was below one clock tick: too few "
            "instances to compare)"
        )
        return
    print(
        f"  structure check: {check * 1e6:.1f} us/instance = {check / receiver_cpu:.1%} of the "
        f"receiver's CPU per instance ({receiver_cpu * 1e6:.0f} us, 1 association); the whole "
        f"scanner {checked * 1e6:.1f} us = {checked / receiver_cpu:.1%}"
    )


def split(folder: Path, parts: int) -> list[Path]:
    """Hard-link the files of ``folder`` into ``parts`` sub-folders, round robin."""
    targets = [folder.with_name(f"{folder.name}-{parts}-part{i}") for i in range(parts)]
    for target in targets:
        target.mkdir(exist_ok=True)
    for i, path in enumerate(sorted(folder.glob("*.dcm"))):
        link = targets[i % parts] / path.name
        if not link.exists():
            link.hardlink_to(path)
    return targets


def measure(
    name: str, count: int, rounds: int, cases: dict[str, Callable[[], float]]
) -> dict[str, list[float]]:
    """Run every case ``rounds`` times, interleaved; print the median instances/s of each and
    return the seconds of each round.

    Each round starts one case later than the one before, so that no case always runs right
    after the same other one (and inherits its writeback or its freed inodes)."""
    times: dict[str, list[float]] = {case: [] for case in cases}
    order = list(cases)
    for round_index in range(rounds):
        shift = round_index % len(order)
        for case in order[shift:] + order[:shift]:
            times[case].append(cases[case]())
    print(f"\n{name} ({count} instances, median of {rounds})")
    for case, values in times.items():
        print(f"  {case:<40} {count / statistics.median(values):8.0f} instances/s")
    return times


def paired(times: dict[str, list[float]], case: str, reference: str) -> float:
    """The median over rounds of case's rate / reference's rate, each round's pair measured
    minutes apart at most: steadier than a ratio of medians when the machine drifts."""
    pairs = zip(times[case], times[reference], strict=True)
    return statistics.median(t_ref / t for t, t_ref in pairs)


def quartiles(times: dict[str, list[float]], case: str, reference: str) -> str:
    """The middle half of the rounds' ratios (as for :func:`paired`), to show the noise."""
    pairs = zip(times[case], times[reference], strict=True)
    ratios = [t_ref / t for t, t_ref in pairs]
    if len(ratios) < 4:
        return ""
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"   (middle half of the rounds {low:.2f}-{high:.2f})"


def load_average() -> str:
    """The 1-minute load average, to print beside each measurement (a busy machine skews)."""
    return f"load average {os.getloadavg()[0]:.1f}"


def print_ratios(times: dict[str, list[float]], associations: list[str]) -> None:
    """Per association count: mercure against storescp (1) or `storescp --fork` (several),
    as they are and made durable, and the ceiling the disk's flush floor allows."""
    print("  ratios (median over rounds of each round's ratio):")
    for assoc in associations:
        single = assoc == "1 association"
        reference = f"storescp, {assoc}" if single else f"storescp --fork, {assoc}"
        floor = "flush floor, 1 thread" if single else f"flush floor, {assoc.split()[0]} threads"
        ratio = paired(times, f"mercure, {assoc}", reference)
        line = f"  mercure/{reference.split(',')[0]}, {assoc}: {ratio:.2f}"
        if floor in times:
            # A receiver exactly as fast as storescp in everything else, plus one flush per
            # instance before its answer: per instance it takes storescp's time plus the
            # flush's, so it reaches 1 / (1 + storescp rate / flush rate) of storescp.
            ceiling = 1 / (1 + paired(times, reference, floor))
            line += f"   (storescp plus one flush per instance would reach {ceiling:.2f})"
        print(line)
        durable_reference = reference.replace(",", " + fsync,")
        if durable_reference in times:
            like = paired(times, f"mercure, {assoc}", durable_reference)
            noise = quartiles(times, f"mercure, {assoc}", durable_reference)
            print(f"  mercure/{durable_reference.split(',')[0]}, {assoc}: {like:.2f}{noise}")
        if not single and f"mercure balanced, {assoc}" in times and durable_reference in times:
            bound = paired(times, f"mercure balanced, {assoc}", durable_reference)
            print(f"  mercure one process per association/{durable_reference.split(',')[0]}, "
                  f"{assoc}: {bound:.2f}")  # fmt: skip
        if f"mercure, fsync off, {assoc}" in times:
            unflushed = paired(times, f"mercure, fsync off, {assoc}", reference)
            label = f"mercure with fsync off/{reference.split(',')[0]}, {assoc}"
            print(f"  {label}: {unflushed:.2f}")


def main() -> None:
    """Run the benchmark and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=int, default=1000, help="CT instances (0.5 MB each)")
    parser.add_argument("--tiny", type=int, default=5000, help="tiny instances (9 KB each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=1024, help="multi-frame instance size")
    parser.add_argument("--no-fsync", action="store_true", help="also measure with fsync off")
    parser.add_argument(
        "--work",
        type=Path,
        help="working folder, kept (default: a temporary one, removed at the end)",
    )
    parser.add_argument(
        "--associations", default="4", help="parallel associations, comma separated (4,8)"
    )
    parser.add_argument(
        "--processes", default="auto", help="receiver.processes of the receiver (default auto)"
    )
    parser.add_argument(
        "--load", action="store_true", help="also run the parallel cases beside a CPU load"
    )
    parser.add_argument(
        "--balanced",
        action="store_true",
        help="also run the parallel cases with one single-process receiver per association",
    )
    args = parser.parse_args()
    parallel = [int(n) for n in args.associations.split(",")]
    processes: int | str = int(args.processes) if args.processes.isdigit() else args.processes

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    data = work / "data"
    print(f"working in {work}; generating data ...")
    sets = {
        "CT 512x512": generate_series(data / "ct", kind="ct", count=args.ct, seed=1).folder,
        "tiny 64x64": generate_series(data / "tiny", kind="tiny", count=args.tiny, seed=2).folder,
    }

    scp_out = work / "storescp"
    scp = StoreSCP(scp_out, ae_title="STORESCP").start()
    scp_fork = StoreSCP(work / "storescp-fork", ae_title="STORESCP", fork=True).start()
    # The same storescp made durable: a shim fsyncs each file before storescp closes it, and
    # so before it answers; the like-for-like reference for the receiver's default.
    durable: dict[bool, StoreSCP] = {}
    shim = build_fsync_shim(work)
    if shim is not None:
        for fork in (False, True):
            durable[fork] = StoreSCP(
                work / f"storescp-fsync{'-fork' * fork}", ae_title="STORESCP", fork=fork
            )
            durable[fork].env = {"LD_PRELOAD": str(shim)}
            durable[fork].start()
    else:
        print("no C compiler: the storescp + fsync reference is left out")
    receivers: dict[str, RunningReceiver] = {
        "mercure": start_receiver(
            receiver_config(work / "mercure", receiver={"processes": processes}),
            work / "mercure.yaml",
        ),
    }
    assert receivers["mercure"].process is not None
    running = len(children_of(receivers["mercure"].process.pid)) or 1
    print(f"receiver.processes: {processes} ({running} running)")
    balanced = [
        start_receiver(
            receiver_config(work / "mercure-balanced", receiver={"processes": 1}),
            work / f"mercure-balanced-{n}.yaml",
        )
        for n in range(max(parallel) if args.balanced else 0)
    ]
    if args.no_fsync:
        receivers["mercure, fsync off"] = start_receiver(
            receiver_config(
                work / "mercure-nofsync", receiver={"fsync": False, "processes": processes}
            ),
            work / "mercure-nofsync.yaml",
        )

    # Earlier rounds' files are moved aside, not deleted, until the end: on ext4 without a
    # journal, creating files soon after thousands were deleted costs a scan past every
    # recently freed inode, which would tax whichever side runs after a deletion.
    trash = work / "trash"
    trash.mkdir(exist_ok=True)
    moved = iter(range(1 << 30))

    def fresh(run: Callable[[], float], *folders: Path) -> Callable[[], float]:
        def case() -> float:
            for folder in folders:  # empty it, but keep hidden working folders (.receiving)
                for entry in folder.iterdir():
                    if not entry.name.startswith("."):
                        entry.rename(trash / str(next(moved)))
            # Nothing dirty in the page cache at the start: the writeback of a case without
            # fsync (storescp's) would otherwise slow whichever case comes next.
            os.sync()
            return run()

        return case

    try:
        check_file_creation(
            {
                "storescp": scp_out,
                "storescp --fork": scp_fork.output_dir,
                **{
                    f"storescp + fsync{' --fork' * fork}": d.output_dir
                    for fork, d in durable.items()
                },
                **{label: r.data.root / "incoming" for label, r in receivers.items()},
            },
            trash,
        )
        for name, folder in sets.items():
            count = len(list(folder.glob("*.dcm")))
            cases: dict[str, Callable[[], float]] = {
                "storescp, 1 association": fresh(
                    lambda f=folder: send(scp.port, [f], "STORESCP"), scp_out
                ),
            }
            receiver_cpu: list[float] = []
            for label, receiver in receivers.items():
                incoming = receiver.data.root / "incoming"
                cases[f"{label}, 1 association"] = fresh(
                    lambda r=receiver, f=folder: send(r.port, [f], "MERCURE"), incoming
                )
            main_receiver = receivers["mercure"]
            assert main_receiver.process is not None
            cases["mercure, 1 association"] = with_cpu(
                cases["mercure, 1 association"], main_receiver.process.pid, receiver_cpu
            )
            if False in durable:
                cases["storescp + fsync, 1 association"] = fresh(
                    lambda f=folder, d=durable[False]: send(d.port, [f], "STORESCP"),
                    durable[False].output_dir,
                )
            floor_dir = work / "flush-floor"
            floor_dir.mkdir(exist_ok=True)
            sample = next(folder.glob("*.dcm")).read_bytes()
            cases["flush floor, 1 thread"] = fresh(
                lambda b=sample, n=count, d=floor_dir: flush_floor(d, b, n, 1), floor_dir
            )
            loaded: dict[str, Callable[[], float]] = {}
            for n in parallel:
                parts = split(folder, n)
                several = f"{n} associations"
                loaded[f"storescp --fork, {several}"] = fresh(
                    lambda p=parts: send(scp_fork.port, p, "STORESCP"), scp_fork.output_dir
                )
                if True in durable:
                    loaded[f"storescp --fork + fsync, {several}"] = fresh(
                        lambda p=parts, d=durable[True]: send(d.port, p, "STORESCP"),
                        durable[True].output_dir,
                    )
                for label, receiver in receivers.items():
                    incoming = receiver.data.root / "incoming"
                    loaded[f"{label}, {several}"] = fresh(
                        lambda r=receiver, p=parts: send(r.port, p, "MERCURE"), incoming
                    )
                if balanced:
                    loaded[f"mercure balanced, {several}"] = fresh(
                        lambda p=parts: send_each(balanced, p),
                        balanced[0].data.root / "incoming",
                    )
                cases[f"flush floor, {n} threads"] = fresh(
                    lambda t=n, b=sample, c=count, d=floor_dir: flush_floor(d, b, c, t),
                    floor_dir,
                )
            cases.update(loaded)
            times = measure(f"{name}, {load_average()}", count, args.rounds, cases)
            print_ratios(times, ["1 association", *(f"{n} associations" for n in parallel)])
            if args.load:
                with CpuLoad(os.cpu_count() or 1) as load:
                    times = measure(
                        f"{name} beside a CPU load ({load.processes} busy processes), "
                        f"{load_average()}",
                        count,
                        args.rounds,
                        loaded,
                    )
                print_ratios(times, [f"{n} associations" for n in parallel])
            print_check_cost(folder, statistics.median(receiver_cpu) / count)

        if args.big_mb:
            receiver = receivers["mercure"]
            big = generate_big(data / "big", args.big_mb)
            fresh(lambda: 0.0, receiver.data.root / "incoming")()
            elapsed = send(receiver.port, [big], "MERCURE")
            assert receiver.process is not None
            peak = peak_rss_mb(receiver.process.pid)
            print(
                f"\nsingle {args.big_mb} MB multi-frame instance: {elapsed:.1f} s, "
                f"receiver peak RSS {peak:.0f} MB"
            )
    finally:
        for receiver in [*receivers.values(), *balanced]:
            receiver.stop()
        scp.stop()
        scp_fork.stop()
        for durable_scp in durable.values():
            durable_scp.stop()
        shutil.rmtree(trash, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def generate_big(folder: Path, megabytes: int) -> Path:
    """A folder with one multi-frame CT instance of about ``megabytes`` MB (512x512 frames)."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big.dcm"
    if path.exists():
        return folder
    template = generate_series(folder / "template", kind="ct", count=1, seed=9).paths[0]
    dataset = pydicom.dcmread(template)
    frames = max(1, megabytes * (1 << 20) // (512 * 512 * 2))
    dataset.NumberOfFrames = frames
    dataset.PixelData = bytes(512 * 512 * 2) * frames
    dataset.save_as(path, enforce_file_format=True)
    shutil.rmtree(folder / "template")
    return folder


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


if __name__ == "__main__":
    main()
