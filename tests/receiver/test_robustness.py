"""The receiver under failure: killed mid-transfer, aborted associations, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from mercure.testing.checks import assert_no_partial_files
from mercure.testing.peers import storescu, storescu_reporting_acks
from mercure.testing.peers.dcmtk import dcmtk_program
from mercure.testing.peers.process import peer_environment
from mercure.testing.receiver import RunningReceiver, dataset_bytes
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.peers


@pytest.mark.slow
def test_kill_during_transfer_keeps_every_acknowledged_instance(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """SIGKILL mid-way through 1000 instances: every acknowledged one is complete in incoming/."""
    series = generate_series(tmp_path / "in", kind="tiny", count=1000, seed=3)
    acknowledged: list[Path] = []
    assert receiver.process is not None
    pid = receiver.process.pid

    def on_ack(path: Path) -> None:
        acknowledged.append(path)
        if len(acknowledged) == 300:
            os.kill(pid, signal.SIGKILL)

    storescu_reporting_acks(receiver.port, series.folder, on_ack)
    assert receiver.process is not None
    receiver.process.wait()
    receiver.process = None
    assert 300 <= len(acknowledged) < 1000
    [folder] = receiver.series_folders()
    assert assert_no_partial_files(folder) >= len(acknowledged)
    by_uid = {p.stem: p for p in folder.glob("*.dcm")}
    uids = {instance.path: instance.sop_instance_uid for instance in series.instances}
    for path in acknowledged:
        assert dataset_bytes(by_uid[uids[path]]) == dataset_bytes(path)
    # A restarted receiver clears the dead one's temporary files and takes the rest.
    receiver.start()
    wait_until(lambda: receiver.staging_files() == [], message="stale staging files removed")
    storescu(receiver.port, series.folder, called_aet="MERCURE")
    assert len(list(folder.glob("*.dcm"))) == 1000


def test_sender_dying_mid_dataset_leaves_no_partial_file(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """A sender killed while a large instance is in flight: its temporary file is removed."""
    big = generate_series(tmp_path / "big", kind="ct", count=1, size=(4096, 4096))
    command = [
        dcmtk_program("storescu"), "-aec", "MERCURE", "--max-pdu", "16384",
        "127.0.0.1", str(receiver.port), str(big.paths[0]),
    ]  # fmt: skip
    with subprocess.Popen(command, env=peer_environment()) as sender:
        wait_until(receiver.staging_files, timeout=20, message="transfer in progress")
        sender.kill()
    wait_until(lambda: receiver.staging_files() == [], message="partial file removed")
    assert receiver.instances() == []
    assert receiver.process is not None and receiver.process.poll() is None


def test_first_sigterm_lets_a_transfer_finish(receiver: RunningReceiver, tmp_path: Path) -> None:
    """SIGTERM during an association: the receiver stops listening but completes the transfer."""
    series = generate_series(tmp_path / "in", kind="ct", count=60)
    command = [
        dcmtk_program("storescu"), "-aec", "MERCURE", "+sd", "+r",
        "127.0.0.1", str(receiver.port), str(series.folder),
    ]  # fmt: skip
    with subprocess.Popen(command, env=peer_environment()) as sender:
        wait_until(lambda: len(receiver.instances()) >= 5, timeout=20)
        assert receiver.process is not None
        receiver.process.send_signal(signal.SIGTERM)
        assert sender.wait(60) == 0
        assert receiver.process.wait(30) == 0
    assert len(receiver.instances()) == 60
