"""The receiver as several processes on one port (receiver.processes, shared sockets)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from pynetdicom import AE

from mercure.core.heartbeat import read_heartbeats
from mercure.dicomnet.filemeta import read_file_meta
from mercure.receiver.listeners import LISTEN_RETRY_SECONDS
from mercure.testing.checks import assert_no_partial_files
from mercure.testing.peers import storescu
from mercure.testing.peers.dcmtk import dcmtk_program
from mercure.testing.peers.process import peer_environment
from mercure.testing.ports import free_port
from mercure.testing.receiver import RunningReceiver, dataset_bytes
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.stow import TOKEN, multipart_body, start_stow_receiver, stow_receiver_config
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.peers


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def split(folder: Path, parts: int) -> list[Path]:
    """Hard-link the instances of ``folder`` into ``parts`` folders, round robin."""
    targets = [folder.with_name(f"{folder.name}-{i}") for i in range(parts)]
    for target in targets:
        target.mkdir()
    for i, path in enumerate(sorted(folder.glob("*.dcm"))):
        (targets[i % parts] / path.name).hardlink_to(path)
    return targets


def journal(receiver: RunningReceiver, series: GeneratedSeries) -> list[dict[str, object]]:
    """The journal lines of a series folder in incoming/."""
    path = receiver.data.root / "incoming" / series.series_uid / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_stored_once(receiver: RunningReceiver, series: GeneratedSeries) -> set[str]:
    """Every instance of ``series`` is on disk, identical, and journaled once; the pids of the
    receiver processes that stored it."""
    folder = receiver.data.root / "incoming" / series.series_uid
    for instance in series.instances:
        received = folder / f"{instance.sop_instance_uid}.dcm"
        assert dataset_bytes(received) == dataset_bytes(instance.path)
    lines = journal(receiver, series)
    assert sorted(str(line["sop"]) for line in lines if "sop" in line) == sorted(
        series.sop_instance_uids
    )
    assert (folder / "tags.json").is_file()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    # The association key is "<listener>-<pid>-<number>".
    return {str(line["assoc"]).split("-")[1] for line in lines if "sop" in line}


def reconfigure(receiver: RunningReceiver, change: Callable[[dict[str, object]], None]) -> None:
    """Rewrite the receiver's configuration file atomically with ``change`` applied."""
    config = yaml.safe_load(receiver.config_path.read_text())
    change(config)
    temp = receiver.config_path.with_suffix(".tmp")
    temp.write_text(yaml.safe_dump(config))
    os.replace(temp, receiver.config_path)


def move_listener(receiver: RunningReceiver, port: int) -> None:
    """Reload the receiver with its listener on ``port``."""

    def move(config: dict[str, object]) -> None:
        config["receiver"]["listeners"][0]["port"] = port  # type: ignore[index]

    reconfigure(receiver, move)


def wait_listening(receiver: RunningReceiver, port: int, processes: int, offset: int) -> None:
    """Wait until ``processes`` receiver processes logged that they listen on ``port``."""
    wait_until(
        lambda: receiver.log_text()[offset:].count(f": MERCURE on port {port}") == processes,
        timeout=60,
        message=f"{processes} processes on port {port}",
    )


def test_parallel_associations_over_three_processes_store_every_instance_once(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """Nine associations at once against three processes on one port: every instance once,
    and more than one process did the work."""
    receiver = receiver_factory(receiver={"processes": 3})
    assert receiver.process is not None
    assert len(children_of(receiver.process.pid)) == 3
    series = [
        generate_series(tmp_path / f"in{i}", kind="tiny", count=12, seed=100 + i) for i in range(9)
    ]
    with ThreadPoolExecutor(len(series)) as pool:
        list(
            pool.map(
                lambda s: storescu(receiver.port, s.folder, called_aet="MERCURE"),
                series,
            )
        )
    pids: set[str] = set()
    for one in series:
        pids |= assert_stored_once(receiver, one)
    assert len(pids) >= 2
    assert len(receiver.series_folders()) == 9
    assert receiver.staging_files() == []


def test_associations_held_at_once_each_get_a_process_of_their_own(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """Four associations opened one after another and held, four processes: each association
    in its own process, as `storescp --fork` has them (an idle process takes the next
    connection; the kernel's hash of SO_REUSEPORT put two in one process nine times in ten)."""
    receiver = receiver_factory(receiver={"processes": 4})
    series = generate_series(tmp_path / "in", kind="tiny", count=4, seed=21)
    meta = read_file_meta(series.paths[0])
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(meta.sop_class_uid, meta.transfer_syntax_uid)
    held = []
    try:
        for path in series.paths:
            assoc = ae.associate("127.0.0.1", receiver.port, ae_title="MERCURE")
            assert assoc.is_established
            held.append(assoc)
            assert assoc.send_c_store(path).Status == 0x0000
    finally:
        for assoc in held:
            assoc.release()
    assert len(assert_stored_once(receiver, series)) == 4


def test_one_series_from_two_processes_is_stored_once(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """Two associations send interleaved halves of one series at once until the kernel has
    given them to different processes: one folder, every instance once, one tags file."""
    receiver = receiver_factory(receiver={"processes": 2})
    shared_between_processes = 0
    for attempt in range(16):
        series = generate_series(tmp_path / f"s{attempt}", kind="tiny", count=20, seed=attempt)
        with ThreadPoolExecutor(2) as pool:
            list(
                pool.map(
                    lambda half: storescu(receiver.port, half, called_aet="MERCURE"),
                    split(series.folder, 2),
                )
            )
        if len(assert_stored_once(receiver, series)) == 2:
            shared_between_processes += 1
            if shared_between_processes == 2:
                break
    assert shared_between_processes >= 1
    assert receiver.staging_files() == []


@pytest.mark.slow
def test_killed_process_is_restarted_and_its_partial_instance_removed(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """SIGKILL to the process receiving a large instance: the parent starts a new one, which
    removes the partial file; the other process lives on, and the port still takes series."""
    receiver = receiver_factory(receiver={"processes": 2})
    assert receiver.process is not None
    parent = receiver.process.pid
    before = children_of(parent)
    big = generate_series(tmp_path / "big", kind="ct", count=1, size=(4096, 4096))
    command = [
        dcmtk_program("storescu"), "-aec", "MERCURE", "--max-pdu", "16384",
        "127.0.0.1", str(receiver.port), str(big.paths[0]),
    ]  # fmt: skip
    with subprocess.Popen(
        command, env=peer_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as sender:
        [partial] = wait_until(receiver.staging_files, timeout=20, message="transfer under way")
        victim = int(partial.parent.name.rsplit("-", 1)[1])
        assert victim in before
        os.kill(victim, signal.SIGKILL)
        sender.wait(30)
    wait_until(
        lambda: len(children_of(parent)) == 2 and victim not in children_of(parent),
        timeout=30,
        message="a new receiver process",
    )
    assert before - {victim} <= children_of(parent)
    wait_until(lambda: receiver.staging_files() == [], timeout=30, message="partial removed")
    assert receiver.instances() == []
    series = generate_series(tmp_path / "after", kind="tiny", count=24, seed=5)
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda half: storescu(receiver.port, half, called_aet="MERCURE"),
                split(series.folder, 4),
            )
        )
    assert_stored_once(receiver, series)
    assert "receiver:" in receiver.log_text() and "exited with code -9" in receiver.log_text()


@pytest.mark.slow
def test_reload_changes_the_process_count_and_moves_every_process_to_a_new_port(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """A saved configuration reaches every process: more processes, then a new port on all of
    them, then fewer processes."""
    receiver = receiver_factory(receiver={"processes": 2})
    assert receiver.process is not None
    parent = receiver.process.pid
    reconfigure(receiver, lambda c: c["receiver"].update(processes=3))  # type: ignore[attr-defined]
    wait_until(lambda: len(children_of(parent)) == 3, timeout=30, message="a third process")
    new_port = free_port()
    offset = len(receiver.log_text())

    move_listener(receiver, new_port)
    wait_listening(receiver, new_port, 3, offset)
    series = generate_series(tmp_path / "in", kind="tiny", count=30, seed=9)
    with ThreadPoolExecutor(3) as pool:
        list(
            pool.map(
                lambda part: storescu(new_port, part, called_aet="MERCURE"),
                split(series.folder, 3),
            )
        )
    assert_stored_once(receiver, series)
    reconfigure(receiver, lambda c: c["receiver"].update(processes=1))  # type: ignore[attr-defined]
    wait_until(lambda: len(children_of(parent)) == 1, timeout=30, message="one process left")
    [beat] = [b for b in read_heartbeats(receiver.data.run_dir) if b.pid == parent]
    wait_until(
        lambda: any(
            b.pid == parent and b.detail.startswith("1/1 processes")
            for b in read_heartbeats(receiver.data.run_dir)
        ),
        message="the parent's heartbeat shows one process",
    )
    assert beat.service == "receiver"


@pytest.mark.parametrize("processes", [1, 2])
def test_a_listener_moved_to_a_port_in_use_opens_once_the_port_is_free(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path, processes: int
) -> None:
    """A reload moves the listener to a port someone else holds: the receiver says which
    listener and port (once, not at every try), runs on, and opens the listener by itself once
    the port is free, with no further configuration change."""
    receiver = receiver_factory(receiver={"processes": processes})
    assert receiver.process is not None
    parent = receiver.process.pid
    offset = len(receiver.log_text())
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        move_listener(receiver, taken)
        error = f"listener 'default' cannot listen on 0.0.0.0:{taken}"
        wait_until(
            lambda: error in receiver.log_text()[offset:],
            timeout=30,
            message="the error naming the listener and the port",
        )
        assert "trying again every 5 s" in receiver.log_text()[offset:]
        time.sleep(2.5 * LISTEN_RETRY_SECONDS)  # two more tries, at least
        assert receiver.log_text()[offset:].count(error) == 1
        assert receiver.process.poll() is None
        assert len(children_of(parent)) == (processes if processes > 1 else 0)
    wait_listening(receiver, taken, processes, offset)
    assert "open now, on a later try" in receiver.log_text()[offset:]
    series = generate_series(tmp_path / "in", kind="tiny", count=3, seed=31)
    storescu(taken, series.folder, called_aet="MERCURE")
    assert_stored_once(receiver, series)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_listener_whose_new_certificate_is_missing_opens_once_it_is_there(
    receiver_factory: Callable[..., RunningReceiver], pki: Path, tmp_path: Path, processes: int
) -> None:
    """A reload points the TLS listener at a certificate not in place yet: each process says
    which listener and why (once), runs on, and opens the listener by itself once the file is
    there."""
    tls = {"certificate": str(pki / "server.pem"), "key": str(pki / "server.key")}
    receiver = receiver_factory(listener={"tls": tls}, receiver={"processes": processes})
    offset = len(receiver.log_text())
    later = tmp_path / "renewed.pem"

    def renew(config: dict[str, object]) -> None:
        config["receiver"]["listeners"][0]["tls"]["certificate"] = str(later)  # type: ignore[index]

    reconfigure(receiver, renew)
    error = "listener 'default': cannot load its TLS certificate or key"
    wait_until(
        lambda: receiver.log_text()[offset:].count(error) == processes,
        timeout=30,
        message="the error naming the listener, once per process",
    )
    time.sleep(2.5 * LISTEN_RETRY_SECONDS)  # two more tries, at least
    assert receiver.log_text()[offset:].count(error) == processes
    assert receiver.process is not None and receiver.process.poll() is None
    later.write_bytes((pki / "server.pem").read_bytes())
    wait_until(
        lambda: receiver.log_text()[offset:].count("is open now, on a later try") == processes,
        timeout=30,
        message="the listener open again in every process",
    )
    series = generate_series(tmp_path / "in", kind="tiny", count=3, seed=32)
    tls_args = [
        "+tls",
        str(pki / "client.key"),
        str(pki / "client.pem"),
        "+cf",
        str(pki / "ca.pem"),
    ]
    storescu(receiver.port, series.folder, called_aet="MERCURE", extra_args=tls_args)
    assert_stored_once(receiver, series)


def test_stop_lets_transfers_finish_in_every_process_then_exits(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """SIGTERM to the parent while associations are open: they complete, every process exits,
    the parent with 0, and its heartbeat says stopped."""
    receiver = receiver_factory(receiver={"processes": 2})
    assert receiver.process is not None
    parent = receiver.process.pid
    children = children_of(parent)
    series = generate_series(tmp_path / "in", kind="ct", count=20, seed=4)
    parts = split(series.folder, 2)
    commands = [
        [dcmtk_program("storescu"), "-aec", "MERCURE", "+sd", "+r", "127.0.0.1",
         str(receiver.port), str(part)]
        for part in parts
    ]  # fmt: skip
    senders = [
        subprocess.Popen(
            command, env=peer_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for command in commands
    ]
    uid_of = {i.path.name: i.sop_instance_uid for i in series.instances}
    sent_by = [{uid_of[path.name] for path in part.glob("*.dcm")} for part in parts]

    def both_under_way() -> bool:
        # A sender that has not connected yet when the stop begins is refused, rightly: wait
        # until each one has stored an instance, so both associations are open.
        stored = {path.stem for path in receiver.instances()}
        return all(stored & uids for uids in sent_by)

    wait_until(both_under_way, timeout=30, message="both transfers under way")
    assert receiver.stop(signal.SIGTERM) == 0
    assert [sender.wait(60) for sender in senders] == [0, 0]
    assert_stored_once(receiver, series)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    beats = [b for b in read_heartbeats(receiver.data.run_dir) if b.pid == parent]
    assert [b.state for b in beats] == ["stopped"]
    assert assert_no_partial_files(receiver.data.root / "incoming" / series.series_uid) == 20


def test_stow_rs_is_served_by_one_process_and_places_like_c_store(tmp_path: Path) -> None:
    """With two processes, one STOW-RS endpoint listens (process 1), and what it stores lands
    in incoming/ as C-STORE's instances do."""
    config = stow_receiver_config(tmp_path / "data")
    config["receiver"]["processes"] = 2
    receiver = start_stow_receiver(config, tmp_path / "mercure.yaml")
    try:
        series = generate_series(tmp_path / "in", kind="tiny", count=5, seed=7)
        content_type, body = multipart_body(i.path for i in series.instances)
        answer = httpx.post(
            f"{receiver.extra['stow_url']}/studies",
            content=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        folder = receiver.data.root / "incoming" / series.series_uid
        for instance in series.instances:
            received = folder / f"{instance.sop_instance_uid}.dcm"
            assert dataset_bytes(received) == dataset_bytes(instance.path)
        assert (folder / "tags.json").is_file()
        # A second endpoint would log a second line, or fail to bind and its process exit.
        assert receiver.log_text().count("STOW-RS listening") == 1
        assert "exited with code" not in receiver.log_text()
    finally:
        receiver.stop()
