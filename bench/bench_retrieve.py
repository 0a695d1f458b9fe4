"""Retrieving a study from Orthanc by C-GET and by C-MOVE: mercure against DCMTK, one run.

A dedicated Orthanc holds one study of CT instances (~0.5 MB each, default 1000). Round by
round, alternating, so that both sides see the same machine state:

- C-GET: our requestor (``Association.get``) into the receiver's own write path (a Placer on
  a data folder: streamed, fsynced before each C-STORE-RSP, journal and tags), against DCMTK
  ``getscu`` writing files into a folder;
- C-MOVE: our requestor (``Association.move``) to a running ``mercure receiver`` (its default
  settings: fsync before each answer), against DCMTK ``movescu`` receiving on its own storage
  port (``+P``).

Orthanc is the sender on both sides. DCMTK runs with TCP_NODELAY=1 and, with a C compiler on
the machine, with the LD_PRELOAD shim bench/fsync_on_close.c that fsyncs every file it
writes before closing it (and so before answering the C-STORE): both sides are durable.

    .venv/bin/python bench/bench_retrieve.py [--ct 1000] [--rounds 3] [--work DIR]

Prints instances/s per case and the ratios mercure / DCMTK (median over rounds of each
round's ratio); the goal is at least 0.9 for each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pydicom.dataset import Dataset

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import EventClient, Outbox
from mercure.core.ingest.placement import AssociationState, Placer
from mercure.core.ingest.staging import Staging
from mercure.dicomnet import Association, get_contexts, move_contexts
from mercure.testing.peers import Orthanc
from mercure.testing.peers.dcmtk import dcmtk_program, storescu
from mercure.testing.peers.process import peer_environment
from mercure.testing.ports import free_port
from mercure.testing.receiver import receiver_config, start_receiver
from mercure.testing.series import generate_series

T = TypeVar("T")

OUR_AET = "MERCURE_QR"
GETSCU_AET = "GETSCU"
MOVESCU_AET = "MOVESCU"


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


def run_fast(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where installed, as the services with a DICOM hot path do
    (``Service.fast_event_loop``); on asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def identifier(study_uid: str) -> Dataset:
    """Study Root identifier of the study."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


Timing = tuple[float, float]
"""Wall-clock seconds of a case and the CPU seconds our (or DCMTK's) side used for it."""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds (user + system) of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mercure_get(orthanc: Orthanc, study_uid: str, data: DataFolder, count: int) -> Timing:
    """Seconds (and CPU seconds of this process) our C-GET takes to land the study in
    ``data``'s incoming/ through a Placer."""
    staging = Staging(data.stage(Stage.INCOMING), f"bench-{os.getpid()}")
    outbox = Outbox(data.outbox_dir, f"bench@{os.getpid()}")
    placer = Placer(data, staging, EventClient(outbox, "retriever", "bench"), fsync=True)
    state = AssociationState("bench", "retrieve", orthanc.aet, OUR_AET, "127.0.0.1")

    async def run() -> int:
        contexts, roles = get_contexts()
        async with await Association.connect(
            "127.0.0.1",
            orthanc.dicom_port,
            called_aet=orthanc.aet,
            calling_aet=OUR_AET,
            contexts=contexts,
            roles=roles,
        ) as assoc:
            result = await assoc.get(
                identifier(study_uid), open_store=lambda c: placer.open_sink(state, c)
            )
        return result.completed

    started, cpu = time.perf_counter(), time.process_time()
    completed = run_fast(run())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    placer.release(state, released=True)
    placer.flusher.close()
    staging.close()
    outbox.close()
    if completed != count:
        raise SystemExit(f"mercure C-GET retrieved {completed} of {count} instances")
    return elapsed, cpu


def mercure_move(
    orthanc: Orthanc, study_uid: str, destination: str, count: int, receiver_pid: int
) -> Timing:
    """Seconds our C-MOVE takes until Orthanc reports every instance stored at the receiver
    (CPU: this process's plus the receiver's)."""

    async def run() -> int:
        async with await Association.connect(
            "127.0.0.1",
            orthanc.dicom_port,
            called_aet=orthanc.aet,
            calling_aet=OUR_AET,
            contexts=move_contexts(),
        ) as assoc:
            result = await assoc.move(identifier(study_uid), destination)
        return result.completed

    started, cpu = time.perf_counter(), time.process_time() + process_cpu(receiver_pid)
    completed = run_fast(run())
    elapsed = time.perf_counter() - started
    cpu = time.process_time() + process_cpu(receiver_pid) - cpu
    if completed != count:
        raise SystemExit(f"mercure C-MOVE moved {completed} of {count} instances")
    return elapsed, cpu


def dcmtk_retrieve(argv: list[str], output: Path, count: int, shim: Path | None) -> Timing:
    """Seconds a getscu/movescu run takes; checks that ``count`` files arrived in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    env = peer_environment({"LD_PRELOAD": str(shim)} if shim else None)
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(
        [*argv, "-od", str(output)], env=env, capture_output=True, text=True, check=False
    )
    elapsed, cpu = time.perf_counter() - started, children_cpu() - cpu
    files = sum(1 for entry in output.iterdir() if entry.is_file())
    if done.returncode or files != count:
        raise SystemExit(f"{argv[0]} stored {files} of {count}:\n{done.stdout}{done.stderr}")
    return elapsed, cpu


def measure(
    name: str, count: int, rounds: int, cases: dict[str, Callable[[], Timing]]
) -> dict[str, list[float]]:
    """Run every case ``rounds`` times, interleaved; print the median instances/s of each,
    each round's, and the median CPU time per instance; return the seconds of each round."""
    times: dict[str, list[float]] = {case: [] for case in cases}
    cpu: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, run in cases.items():
            elapsed, spent = run()
            times[case].append(elapsed)
            cpu[case].append(spent)
    print(f"\n{name} ({count} instances, median of {rounds})")
    for case, values in times.items():
        rounds_text = " ".join(f"{count / value:.0f}" for value in values)
        median = count / statistics.median(values)
        per_instance = statistics.median(cpu[case]) / count * 1e6
        print(
            f"  {case:<36} {median:6.0f} instances/s  CPU {per_instance:5.0f} us/instance"
            f"  (rounds: {rounds_text})"
        )
    return times


def paired(times: dict[str, list[float]], case: str, reference: str) -> float:
    """The median over rounds of case's rate / reference's rate."""
    pairs = zip(times[case], times[reference], strict=True)
    return statistics.median(t_ref / t for t, t_ref in pairs)


def main() -> None:
    """Run the benchmark and print the ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ct", type=int, default=1000, help="CT instances (0.5 MB each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-retrieve-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}; generating data ...")
    series = generate_series(work / f"ct-{args.ct}", "ct", args.ct, seed=1)
    count = len(series)
    shim = build_fsync_shim(work)
    if shim is None:
        print("no C compiler: DCMTK runs without the fsync shim (not durable)")

    receiver = start_receiver(receiver_config(work / "mercure"), work / "mercure.yaml")
    movescu_port = free_port()
    shutil.rmtree(work / "orthanc", ignore_errors=True)
    orthanc = Orthanc(
        work / "orthanc",
        dicomweb=False,
        modalities={
            "bench": (OUR_AET, "127.0.0.1", free_port()),
            "getscu": (GETSCU_AET, "127.0.0.1", free_port()),
            "movescu": (MOVESCU_AET, "127.0.0.1", movescu_port),
            "mercure": (receiver.aet, "127.0.0.1", receiver.port),
        },
    )
    # Earlier rounds' files are moved aside, not deleted, until the end (see bench_receiver).
    trash = work / "trash"
    trash.mkdir(exist_ok=True)
    moved = iter(range(1 << 30))

    def fresh(run: Callable[[], Timing], *folders: Path) -> Callable[[], Timing]:
        def case() -> Timing:
            for folder in folders:
                if folder.exists():
                    for entry in folder.iterdir():
                        if not entry.name.startswith("."):
                            entry.rename(trash / str(next(moved)))
            return run()

        return case

    try:
        orthanc.start()
        print(f"storing {count} instances in Orthanc ...")
        storescu(orthanc.dicom_port, series.folder, called_aet=orthanc.aet, timeout=3600)
        data = DataFolder(work / "get-data")
        data.ensure()
        incoming = data.stage(Stage.INCOMING)
        study = series.study_uid
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
        where = ["127.0.0.1", str(orthanc.dicom_port)]
        getscu = [dcmtk_program("getscu"), "-S", "-aet", GETSCU_AET, "-aec", orthanc.aet]
        movescu = [dcmtk_program("movescu"), "-S", "-aet", MOVESCU_AET, "-aec", orthanc.aet]
        movescu += ["-aem", MOVESCU_AET, "+P", str(movescu_port)]
        get_out, move_out = work / "getscu-out", work / "movescu-out"
        get_times = measure(
            "C-GET of one study from Orthanc",
            count,
            args.rounds,
            {
                "getscu -> folder": fresh(
                    lambda: dcmtk_retrieve([*getscu, *keys, *where], get_out, count, shim),
                    get_out,
                ),
                "mercure C-GET -> Placer (incoming/)": fresh(
                    lambda: mercure_get(orthanc, study, data, count), incoming
                ),
            },
        )
        receiver_incoming = receiver.data.stage(Stage.INCOMING)
        assert receiver.process is not None
        receiver_pid = receiver.process.pid
        move_times = measure(
            "C-MOVE of one study from Orthanc",
            count,
            args.rounds,
            {
                "movescu +P -> folder": fresh(
                    lambda: dcmtk_retrieve([*movescu, *keys, *where], move_out, count, shim),
                    move_out,
                ),
                "mercure C-MOVE -> mercure receiver": fresh(
                    lambda: mercure_move(orthanc, study, receiver.aet, count, receiver_pid),
                    receiver_incoming,
                ),
            },
        )
        durable = " (DCMTK with the fsync shim)" if shim else " (DCMTK without fsync)"
        print(f"\nratios, median over rounds of each round's ratio{durable}:")
        get_ratio = paired(get_times, "mercure C-GET -> Placer (incoming/)", "getscu -> folder")
        move_ratio = paired(
            move_times, "mercure C-MOVE -> mercure receiver", "movescu +P -> folder"
        )
        print(f"  mercure C-GET / getscu:   {get_ratio:.2f}")
        print(f"  mercure C-MOVE / movescu: {move_ratio:.2f}")
    finally:
        orthanc.close()
        receiver.stop()
        shutil.rmtree(trash, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
