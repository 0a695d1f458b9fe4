"""Throughput of mercure.dicomnet's SCP against DCMTK storescp, same data, one run, interleaved.

DCMTK storescu sends a folder on one association to (a) ``storescp`` writing files and (b) a
dicomnet server in a child process whose sink writes each instance like the receiver will:
temporary file with File Meta header + streamed dataset, SeriesInstanceUID found by the
incremental scanner, fsync (unless --no-fsync), rename into <series>/<sop uid>.dcm.

    .venv/bin/python bench/bench_dicomnet_sink.py [--ct 1000] [--tiny 5000] [--rounds 3]

Prints instances/s of each and the ratio dicomnet / storescp (target >= 0.85).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mercure.dicomnet import (
    SERIES_INSTANCE_UID,
    AssociationHandler,
    DatasetScanner,
    ListenerSettings,
    StoreContext,
    build_file_meta,
    serve,
)

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


# --- data ---------------------------------------------------------------------------------


def generate(folder: Path, count: int, rows: int, series_count: int) -> None:
    """Write ``count`` CT instances of rows x rows 16-bit pixels into ``folder`` (once)."""
    marker = folder.with_name(folder.name + ".complete")
    if marker.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    template.Rows = template.Columns = rows
    template.PixelData = os.urandom(rows * rows * 2)
    if "DataSetTrailingPadding" in template:
        del template.DataSetTrailingPadding
    study = generate_uid()
    series = [generate_uid() for _ in range(series_count)]
    for i in range(count):
        template.StudyInstanceUID = study
        template.SeriesInstanceUID = series[i % series_count]
        template.SOPInstanceUID = generate_uid()
        template.InstanceNumber = i + 1
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = template.SOPClassUID
        meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        template.file_meta = meta
        template.save_as(folder / f"{i:06d}.dcm", enforce_file_format=True)
    marker.touch()


# --- the dicomnet side (child process) ------------------------------------------------------


class FileSink:
    """Writes one instance like the receiver: tmp file, File Meta, dataset, fsync, rename."""

    __slots__ = ("_fd", "_handler", "_scanner", "_series", "_tmp", "_uid")

    def __init__(self, handler: BenchHandler, ctx: StoreContext) -> None:
        self._handler = handler
        self._uid = ctx.sop_instance_uid
        self._tmp = f"{handler.out}/.tmp-{self._uid}"
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.write(
            self._fd,
            build_file_meta(ctx.sop_class_uid, self._uid, ctx.transfer_syntax_uid, ctx.calling_aet),
        )
        self._scanner: DatasetScanner | None = DatasetScanner(
            ctx.transfer_syntax_uid, (SERIES_INSTANCE_UID,)
        )
        self._series = ""

    def write(self, chunk: memoryview) -> None:
        scanner = self._scanner
        if scanner is not None and scanner.feed(chunk):
            self._series = scanner.text(SERIES_INSTANCE_UID) or "unknown"
            self._scanner = None
        while chunk:
            written = os.write(self._fd, chunk)
            chunk = chunk[written:]

    def finish(self) -> int:
        if self._handler.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        folder = self._handler.series_folder(self._series or "unknown")
        os.rename(self._tmp, f"{folder}/{self._uid}.dcm")
        return 0

    def abort(self) -> None:
        os.close(self._fd)
        os.unlink(self._tmp)


class BenchHandler(AssociationHandler):
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


async def run_server(port: int, out: str, fsync: bool, max_pdu: int) -> None:
    server = await serve(
        ListenerSettings(ae_title="BENCH", host="127.0.0.1", port=port, max_pdu=max_pdu),
        BenchHandler(out, fsync),
    )
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.shutdown()


# --- orchestration -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


def send(folder: Path, port: int) -> float:
    # Flush what earlier runs left dirty: with ext4's ordered mode the next fsync would
    # otherwise pay for writing back another run's files.
    os.sync()
    start = time.perf_counter()
    subprocess.run(
        ["storescu", "-aec", "BENCH", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
        env=DCMTK_ENV,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def run_storescp(folder: Path, work: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", "BENCH", "-od", str(out), str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        return send(folder, port)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(out)


def run_dicomnet(folder: Path, work: Path, fsync: bool, max_pdu: int) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    args = [sys.executable, __file__, "--serve", str(port), str(out), str(max_pdu)]
    if not fsync:
        args.append("--no-fsync")
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("dicomnet server did not start")
        return send(folder, port)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
        shutil.rmtree(out)


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
    parser.add_argument("--no-fsync", action="store_true", help="dicomnet sink without fsync")
    parser.add_argument("--max-pdu", type=int, default=262144, help="max PDU dicomnet advertises")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "mercure-bench-data"
    )
    parser.add_argument(
        "--serve", nargs=3, metavar=("PORT", "OUT", "MAX_PDU"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        port, out, max_pdu = args.serve
        asyncio.run(run_server(int(port), out, not args.no_fsync, int(max_pdu)))
        return
    sets = []
    if args.ct:
        sets.append(("CT 0.5 MB", args.data / f"ct-{args.ct}", args.ct, 512, 4))
    if args.tiny:
        sets.append(("tiny 9 KB", args.data / f"tiny-{args.tiny}", args.tiny, 64, 10))
    work = Path(tempfile.mkdtemp(prefix="bench-dicomnet-", dir=args.data.parent))
    fsync = not args.no_fsync
    try:
        for label, folder, count, rows, series in sets:
            generate(folder, count, rows, series)
            ref, ours = [], []
            for _ in range(args.rounds):
                ref.append(count / run_storescp(folder, work))
                ours.append(count / run_dicomnet(folder, work, fsync, args.max_pdu))
            r, o = statistics.median(ref), statistics.median(ours)
            print(
                f"{label:10} x{count}: storescp {r:7.0f}/s  dicomnet{' (fsync)' if fsync else ''} "
                f"{o:7.0f}/s  ratio {o / r:.2f}   (rounds: storescp {[round(x) for x in ref]}, "
                f"dicomnet {[round(x) for x in ours]})",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
