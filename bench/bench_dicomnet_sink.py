"""Throughput of mercure.dicomnet's SCP against DCMTK's storescp: same data, one run, interleaved.

DCMTK storescu sends a folder on one association to (a) ``storescp`` and (b) a dicomnet server in
a child process. Three pairings, each printed with its ratio dicomnet / storescp:

- ``file``: storescp writing files vs a dicomnet sink that writes each instance the way the
  receiver must: temporary file with File Meta header + streamed dataset, SeriesInstanceUID found
  by the incremental scanner, fsync, rename into <series>/<sop uid>.dcm (target: >= 0.85).
  storescp itself does not fsync, so this pairing includes the price of durability.
- ``nofsync``: the same sink without fsync: dicomnet's cost next to storescp's, like for like.
- ``null``: ``storescp --ignore`` vs a sink that drops the bytes: the protocol layer alone.

    .venv/bin/python bench/bench_dicomnet_sink.py [--ct 1000] [--tiny 5000] [--rounds 3]
        [--modes file,nofsync,null]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mercure.dicomnet import (
    SERIES_INSTANCE_UID,
    AssociationHandler,
    DatasetScanner,
    ListenerSettings,
    StoreContext,
    build_file_meta,
    new_scanner,
    serve,
)
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.peers.process import is_listening, peer_environment
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

# --- the dicomnet side (runs in a child process) ---------------------------------------------


class FileSink:
    """Writes one instance like the receiver: tmp file, File Meta, dataset, fsync, rename."""

    __slots__ = ("_fd", "_handler", "_meta", "_scanner", "_series", "_tmp", "_uid")

    def __init__(self, handler: FileHandler, ctx: StoreContext) -> None:
        self._handler = handler
        self._uid = ctx.sop_instance_uid
        self._tmp = f"{handler.out}/.tmp-{self._uid}"
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        # Written together with the first chunk: one syscall less per instance.
        self._meta: bytes | None = build_file_meta(
            ctx.sop_class_uid, self._uid, ctx.transfer_syntax_uid, ctx.calling_aet
        )
        self._scanner: DatasetScanner | None = new_scanner(
            ctx.transfer_syntax_uid, (SERIES_INSTANCE_UID,)
        )
        self._series = "unknown"

    def write(self, chunk: memoryview) -> None:
        scanner = self._scanner
        if scanner is not None and scanner.feed(chunk):
            self._series = scanner.text(SERIES_INSTANCE_UID) or "unknown"
            self._scanner = None
        if self._meta is not None:
            written = os.writev(self._fd, (self._meta, chunk)) - len(self._meta)
            self._meta = None
            chunk = chunk[written:]
        while chunk:
            chunk = chunk[os.write(self._fd, chunk) :]

    def finish(self) -> int:
        if self._meta is not None:
            os.write(self._fd, self._meta)
        if self._handler.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        os.rename(self._tmp, f"{self._handler.series_folder(self._series)}/{self._uid}.dcm")
        return 0

    def abort(self) -> None:
        os.close(self._fd)
        os.unlink(self._tmp)


class FileHandler(AssociationHandler):
    """Opens a FileSink per instance."""

    def __init__(self, out: str, fsync: bool) -> None:
        self.out = out
        self.fsync = fsync
        self._folders: set[str] = set()

    def series_folder(self, series: str) -> str:
        folder = f"{self.out}/{series}"
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        return folder

    def open_store(self, context: StoreContext) -> FileSink:
        return FileSink(self, context)


class NullSink:
    """Drops the dataset."""

    def write(self, chunk: memoryview) -> None:
        pass

    def finish(self) -> int:
        return 0

    def abort(self) -> None:
        pass


class NullHandler(AssociationHandler):
    """Answers success without keeping anything."""

    sink = NullSink()

    def open_store(self, context: StoreContext) -> NullSink:
        return self.sink


async def run_server(port: int, out: str, mode: str, max_pdu: int) -> None:
    handler = NullHandler() if mode == "null" else FileHandler(out, fsync=mode == "file")
    settings = ListenerSettings(ae_title="BENCH", host="127.0.0.1", port=port, max_pdu=max_pdu)
    server = await serve(settings, handler)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.shutdown()


# --- orchestration -------------------------------------------------------------------------


def send(folder: Path, port: int) -> float:
    """Seconds storescu takes to send the folder on one association."""
    # Flush what earlier runs left dirty: with ext4's ordered mode the next fsync would
    # otherwise pay for writing back another run's files.
    os.sync()
    start = time.perf_counter()
    storescu(port, folder, called_aet="BENCH", timeout=3600)
    return time.perf_counter() - start


def run_storescp(folder: Path, work: Path, mode: str) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    argv = ["storescp", "-aet", "BENCH", *(["--ignore"] if mode == "null" else ["-od", str(out)])]
    proc = subprocess.Popen(
        [*argv, str(port)],
        env=peer_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: is_listening(port, proc.pid), message="storescp listening")
        return send(folder, port)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(out)


def run_dicomnet(folder: Path, work: Path, mode: str, max_pdu: int) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    argv = [sys.executable, __file__, "--serve", str(port), str(out), mode, str(max_pdu)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the dicomnet server did not start")
        return send(folder, port)
    finally:
        proc.stdin.close()
        proc.wait()
        shutil.rmtree(out)


def data_set(root: Path, kind: str, count: int) -> Path:
    """``count`` instances of ``kind`` in several series, generated once and kept in ``root``."""
    folder = root / f"{kind}-{count}"
    done = root / f"{kind}-{count}.complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        series_count = max(1, count // 250)
        for number in range(series_count):
            share = count // series_count + (1 if number < count % series_count else 0)
            generate_series(folder / f"s{number}", kind, share, seed=7, series_number=number + 1)
        done.touch()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ct", type=int, default=1000, help="CT instances (512x512x16 bit, 0.5 MB)"
    )
    parser.add_argument(
        "--tiny", type=int, default=5000, help="tiny instances (64x64x16 bit, 9 KB)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--modes", default="file,nofsync,null", help="comma-separated: file, nofsync, null"
    )
    parser.add_argument("--max-pdu", type=int, default=262144, help="max PDU dicomnet advertises")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "mercure-bench-dicomnet"
    )
    parser.add_argument(
        "--serve", nargs=4, metavar=("PORT", "OUT", "MODE", "MAX_PDU"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        port, out, mode, max_pdu = args.serve
        asyncio.run(run_server(int(port), out, mode, int(max_pdu)))
        return
    args.data.mkdir(parents=True, exist_ok=True)
    sets = [
        (label, kind, count)
        for label, kind, count in (("CT 0.5 MB", "ct", args.ct), ("tiny 9 KB", "tiny", args.tiny))
        if count
    ]
    work = Path(tempfile.mkdtemp(prefix="bench-dicomnet-", dir=args.data))
    print(f"one association, storescu sending, median of {args.rounds} rounds, instances/s")
    try:
        for label, kind, count in sets:
            folder = data_set(args.data, kind, count)
            for mode in args.modes.split(","):
                reference, ours = [], []
                for _ in range(args.rounds):
                    reference.append(count / run_storescp(folder, work, mode))
                    ours.append(count / run_dicomnet(folder, work, mode, args.max_pdu))
                ref, own = statistics.median(reference), statistics.median(ours)
                ref_name = "storescp --ignore" if mode == "null" else "storescp"
                own_name = {
                    "file": "dicomnet+fsync",
                    "nofsync": "dicomnet",
                    "null": "dicomnet null sink",
                }[mode]
                print(
                    f"{label:9} x{count:<5} {ref_name:17} {ref:6.0f}   {own_name:18} {own:6.0f}   "
                    f"ratio {own / ref:4.2f}   rounds {[round(x) for x in reference]} "
                    f"vs {[round(x) for x in ours]}",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
