"""The event outbox: durable, complete files only, bounded on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mercure.core import events
from mercure.core.events import Event, EventClient, Outbox, read_segment

WRITER = """
import sys
from pathlib import Path
from mercure.core.events import EventClient, Outbox
client = EventClient(Outbox(Path(sys.argv[1]), "writer@test"), "writer")
n = 0
while True:
    n += 1
    client.emit("demo.tick", n=n)
    if n == 100:
        print("ready", flush=True)
"""


def test_events_survive_a_killed_writer(tmp_path: Path) -> None:
    """Events appended before a SIGKILL are all delivered by the next process, in order."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    outbox = Outbox(tmp_path, "writer@test")
    numbers = [
        event.data["n"] for segment in outbox.sealed_segments() for event in read_segment(segment)
    ]
    assert numbers[:100] == list(range(1, 101))
    assert numbers == list(range(1, len(numbers) + 1))
    assert not list(outbox.folder.glob("*.open"))


def test_outbox_is_bounded_and_counts_what_it_dropped(tmp_path: Path) -> None:
    """Past its size limit the oldest sealed segments go, and the loss is counted."""
    outbox = Outbox(tmp_path, "busy@test", max_bytes=20_000, segment_bytes=5_000)
    client = EventClient(outbox, "busy")
    for n in range(400):
        client.emit("demo.tick", n=n)
    outbox.seal()
    remaining = [e.data["n"] for s in outbox.sealed_segments() for e in read_segment(s)]
    dropped = outbox.dropped()
    assert dropped["events"] > 0
    assert dropped["events"] + len(remaining) == 400
    assert remaining == list(range(400 - len(remaining), 400))
    assert sum(s.stat().st_size for s in outbox.sealed_segments()) <= 20_000


def test_second_process_gets_its_own_outbox_folder(tmp_path: Path) -> None:
    """Two live processes never append to the same outbox folder."""
    first = Outbox(tmp_path, "svc@host")
    second = Outbox(tmp_path, "svc@host")
    assert first.folder != second.folder
    first.close()
    second.close()


def test_acknowledged_segment_is_gone(tmp_path: Path) -> None:
    """Acknowledging a delivered segment deletes it."""
    outbox = Outbox(tmp_path, "svc@host")
    outbox.append(Event(service="svc", kind="demo"))
    outbox.seal()
    [segment] = outbox.sealed_segments()
    outbox.acknowledge(segment)
    assert outbox.sealed_segments() == []


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    """A segment whose last line was cut mid-write yields its whole events only."""
    segment = tmp_path / "000000000001.jsonl"
    whole = Event(service="s", kind="k").model_dump_json()
    segment.write_text(whole + "\n" + whole[:20])
    assert len(list(read_segment(segment))) == 1


def test_segment_numbers_are_never_reused(tmp_path: Path) -> None:
    """After every segment was delivered and the process restarted, numbering goes on."""
    first = Outbox(tmp_path, "svc@host")
    first.append(Event(service="svc", kind="demo"))
    first.seal()
    [segment] = first.sealed_segments()
    first.acknowledge(segment)
    first.close()
    second = Outbox(tmp_path, "svc@host")
    second.append(Event(service="svc", kind="demo"))
    second.seal()
    [later] = second.sealed_segments()
    assert int(later.stem) > int(segment.stem)


def _killed_writer(root: Path) -> Path:
    """Run WRITER until it has written 100 events, SIGKILL it; the folder it wrote to."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    return root / f"writer@test.{writer.pid}"


def _numbers(outbox: Outbox) -> list[int]:
    return [e.data["n"] for s in outbox.sealed_segments() for e in read_segment(s)]


def test_events_of_a_dead_twin_are_delivered_by_the_live_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second process of a service writes to ``<name>.<pid>`` while the first holds
    ``<name>``; killed, its events are taken over by the live one, not left there for good."""
    monkeypatch.setattr(events, "ADOPT_INTERVAL", 0.0)  # the deliverer's next look
    live = Outbox(tmp_path, "writer@test")
    twin = _killed_writer(tmp_path)
    assert twin.is_dir(), sorted(p.name for p in tmp_path.iterdir())

    numbers = _numbers(live)
    assert numbers[:100] == list(range(1, 101))
    assert numbers == list(range(1, len(numbers) + 1))
    assert not twin.exists()
    live.close()


def test_a_new_process_takes_over_every_dead_outbox_of_its_service(tmp_path: Path) -> None:
    """Both the plain folder and a twin's, when neither writer lives any more."""
    first = Outbox(tmp_path, "writer@test")
    EventClient(first, "writer").emit("demo.tick", n=0)
    twin = _killed_writer(tmp_path)
    first.close()  # stopped cleanly, but its event was not delivered yet

    restarted = Outbox(tmp_path, "writer@test")
    numbers = _numbers(restarted)
    assert numbers[0] == 0 and numbers[1:101] == list(range(1, 101))
    assert not twin.exists()
    other = Outbox(tmp_path, "other@test")
    assert _numbers(other) == []  # another service's outbox is not its business
    restarted.close()
    other.close()


def test_a_tap_keeps_every_segment_after_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MERCURE_OUTBOX_TAP (tests only), each new segment is linked there as it is made."""
    tap = tmp_path / "tap"
    tap.mkdir()
    monkeypatch.setenv(events.TAP_ENV, str(tap))
    outbox = Outbox(tmp_path / "outbox", "router@a")
    for kind in ("one", "two"):
        outbox.append(Event(service="router", kind=kind))
        outbox.seal()
    for segment in outbox.sealed_segments():
        outbox.acknowledge(segment)
    outbox.close()
    assert outbox.sealed_segments() == []
    kept = [event.kind for path in sorted(tap.iterdir()) for event in read_segment(path)]
    assert kept == ["one", "two"]
