"""Several associations at once: flushes handed to threads, series folders shared between them."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mercure.core.ingest.placement import Flusher
from mercure.testing.checks import assert_no_partial_files
from mercure.testing.peers import storescu, storescu_reporting_acks
from mercure.testing.receiver import RunningReceiver, dataset_bytes
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.peers


def split(folder: Path, parts: int) -> list[Path]:
    """Hard-link the instances of ``folder`` into ``parts`` folders, round robin."""
    targets = [folder.with_name(f"{folder.name}-{i}") for i in range(parts)]
    for target in targets:
        target.mkdir()
    for i, path in enumerate(sorted(folder.glob("*.dcm"))):
        (targets[i % parts] / path.name).hardlink_to(path)
    return targets


def test_five_associations_at_once_deliver_every_instance_once(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """Four associations share one series, a fifth sends another; fsync is on (the default),
    so with several associations open the flushes run in threads while the others go on."""
    shared = generate_series(tmp_path / "shared", kind="tiny", count=60, seed=11)
    other = generate_series(tmp_path / "other", kind="tiny", count=15, seed=12)
    folders = [*split(shared.folder, 4), other.folder]
    with ThreadPoolExecutor(len(folders)) as pool:
        list(
            pool.map(
                lambda folder: storescu(
                    receiver.port, folder, calling_aet="MODALITY", called_aet="MERCURE"
                ),
                folders,
            )
        )

    for series in (shared, other):
        folder = receiver.data.root / "incoming" / series.series_uid
        for instance in series.instances:
            received = folder / f"{instance.sop_instance_uid}.dcm"
            assert dataset_bytes(received) == dataset_bytes(instance.path)
        journal = folder / "journal.jsonl"
        expected = 4 if series is shared else 1
        # Each storescu exits once it has the A-RELEASE-RP; the receiver journals the release
        # when the connection is closed, a moment later.
        wait_until(
            lambda j=journal, n=expected: j.read_text().count('"event": "released"') >= n,
            timeout=10,
            message="every release journaled",
        )
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        stored = sorted(line["sop"] for line in lines if "sop" in line)
        assert stored == sorted(series.sop_instance_uids)
        released = {line["assoc"] for line in lines if line.get("event") == "released"}
        senders = {line["assoc"] for line in lines if "sop" in line}
        assert released == senders
        assert len(senders) == (4 if series is shared else 1)
        assert (folder / "tags.json").exists()
    assert len(receiver.series_folders()) == 2
    assert receiver.staging_files() == []


def test_flusher_completes_flushes_and_reports_a_failed_one(tmp_path: Path) -> None:
    """The flush threads settle each future on the event loop: done, or with the OSError."""
    flusher = Flusher(2)

    async def flush_both() -> tuple[BaseException | None, BaseException | None]:
        fd = os.open(tmp_path / "instance.dcm", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"data")
        closed = os.open(tmp_path / "other.dcm", os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(closed)  # flushing a closed descriptor fails with EBADF
        try:
            good, bad = await asyncio.gather(
                flusher.flush(fd), flusher.flush(closed), return_exceptions=True
            )
        finally:
            os.close(fd)
        return good, bad

    try:
        good, bad = asyncio.run(flush_both())
    finally:
        flusher.close()
    assert good is None
    assert isinstance(bad, OSError) and bad.errno == errno.EBADF
    assert not any(thread.name.startswith("fsync-") for thread in threading.enumerate())


@pytest.mark.slow
def test_kill_during_four_associations_keeps_every_acknowledged_instance(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """SIGKILL while four associations send (flushes on the flush threads): every instance
    any sender saw acknowledged is complete in incoming/."""
    series = generate_series(tmp_path / "in", kind="tiny", count=800, seed=21)
    acknowledged: list[Path] = []
    lock = threading.Lock()
    assert receiver.process is not None
    pid = receiver.process.pid

    def on_ack(path: Path) -> None:
        with lock:
            acknowledged.append(path)
            if len(acknowledged) == 200:
                os.kill(pid, signal.SIGKILL)

    def send(folder: Path) -> None:
        storescu_reporting_acks(receiver.port, folder, on_ack)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, split(series.folder, 4)))
    receiver.process.wait()
    receiver.process = None
    assert 200 <= len(acknowledged) < 800
    [folder] = receiver.series_folders()
    assert assert_no_partial_files(folder) >= len(acknowledged)
    by_uid = {p.stem: p for p in folder.glob("*.dcm")}
    uids = {instance.path.name: instance.sop_instance_uid for instance in series.instances}
    for path in acknowledged:
        assert dataset_bytes(by_uid[uids[path.name]]) == dataset_bytes(path)
