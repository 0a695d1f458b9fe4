"""Request limits: the key is checked and the body bounded before the body is read.

A real ``mercure bookkeeper`` process takes a raw socket that announces a huge body and then
trickles it; it must answer (401 or 413) before the body arrives, close the connection, and
keep its memory flat (peak resident size from /proc).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bookkeeper_harness import TOKEN, BookkeeperProcess, RunningApp, serve_app
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app
from mercure.core.delivery import OutboxDeliverer
from mercure.core.events import Event, EventClient, Outbox

CHUNK = b"x" * 65536
GIVE_UP_AFTER = 256 << 20
"""Bytes the trickle sends at most; an unguarded server reads them all before answering."""
ANSWER_WITHIN = 32 << 20
"""The answer must come before this much is sent (the socket buffers hold a few MB)."""
MEMORY_GROWTH = 48 << 20
"""Peak resident growth allowed: the request limit (1 MB) plus the interpreter's noise."""


def _peak_rss(pid: int) -> int:
    """VmHWM of a process: the most resident memory it ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _trickle(port: int, head: bytes, *, chunked: bool) -> tuple[bytes, int]:
    """Send ``head``, then body chunks until the server answers; (answer, bytes sent by then).

    After the answer, go on sending: the server must close the connection rather than read
    the rest (the returned answer ends where the server closed).
    """
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        while sent < GIVE_UP_AFTER:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            piece = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(CHUNK)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # closed with unread data in its buffer: a reset, after the answer
    return answer, sent


def _head(token: str, *, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: bookkeeper\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[BookkeeperProcess]:
    """A bookkeeper process (SQLite) that accepts request bodies of at most 1 MB."""
    bookkeeper = BookkeeperProcess(tmp_path, None, max_request_mb=1)
    bookkeeper.start()
    yield bookkeeper
    bookkeeper.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("token", "length", "status"),
    [
        ("wrong-key", 800_000_000, b"401"),
        (TOKEN, 800_000_000, b"413"),
        ("wrong-key", None, b"401"),
        (TOKEN, None, b"413"),
    ],
    ids=[
        "wrong-key-huge-length",
        "right-key-huge-length",
        "wrong-key-chunked",
        "right-key-chunked",
    ],
)
def test_huge_bodies_are_refused_early_with_flat_memory(
    limited: BookkeeperProcess, token: str, length: int | None, status: bytes
) -> None:
    """A wrong key is 401 and a body over the limit (announced, or counted while a chunked
    body streams in) is 413, both before the body is read; the server closes the connection
    and its peak memory stays flat."""
    before = _peak_rss(limited.pid)
    answer, sent = _trickle(limited.port, _head(token, length=length), chunked=length is None)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert sent < ANSWER_WITHIN, f"answered only after {sent >> 20} MB"
    assert _peak_rss(limited.pid) - before < MEMORY_GROWTH
    assert limited.process is not None and limited.process.poll() is None


SMALL_LIMIT = 64 << 10
Sender = Callable[[str, int], OutboxDeliverer]


@pytest.fixture
def small_limit(engine: Engine) -> Iterator[RunningApp]:
    """The bookkeeper application served with a request limit of 64 KB."""
    yield from serve_app(create_app(engine, api_key=TOKEN, max_body=SMALL_LIMIT))


@pytest.fixture
def sender(tmp_path: Path) -> Iterator[Callable[[str, int], OutboxDeliverer]]:
    """Makes the deliverer of a fresh outbox, for a URL and a request limit."""
    made: list[OutboxDeliverer] = []

    def make(url: str, limit: int) -> OutboxDeliverer:
        client = EventClient(Outbox(tmp_path / "outbox", "router@test"), "router", "test")
        made.append(OutboxDeliverer(client, url, TOKEN, max_request_bytes=limit))
        return made[-1]

    yield make
    for deliverer in made:
        deliverer.close()
        deliverer.outbox.close()


def _stored(app: RunningApp) -> dict[str, dict[str, object]]:
    items = app.client.get("/api/v1/events", params={"limit": 1000}).json()["items"]
    return {item["id"]: item for item in items}


def test_batches_are_cut_to_the_request_limit(small_limit: RunningApp, sender: Sender) -> None:
    """300 events of 1 KB (300 KB, one batch by count) arrive in batches under 64 KB: every
    event is stored, nothing is set aside."""
    deliverer = sender(small_limit.url, SMALL_LIMIT)
    emitted = [deliverer.events.emit("rule.notification", padding="p" * 1000) for _ in range(300)]
    assert deliverer.deliver_pending()
    assert set(_stored(small_limit)) == {event.id for event in emitted}
    assert not list(deliverer.outbox.folder.glob("*.rejected"))
    assert deliverer.outbox.sealed_segments() == []


def test_a_sender_with_a_larger_limit_halves_refused_batches(
    small_limit: RunningApp, sender: Sender
) -> None:
    """A sender configured for 4 MB against a bookkeeper that takes 64 KB: the 413s make it
    halve its batches until they fit; every event is stored once."""
    deliverer = sender(small_limit.url, 4 << 20)
    emitted = [deliverer.events.emit("rule.notification", padding="p" * 1000) for _ in range(300)]
    assert deliverer.deliver_pending()
    assert set(_stored(small_limit)) == {event.id for event in emitted}
    assert deliverer.outbox.sealed_segments() == []


@pytest.mark.parametrize("sender_limit", [SMALL_LIMIT, 4 << 20], ids=["same", "larger"])
def test_an_event_over_the_limit_goes_shrunk_and_is_kept_whole(
    small_limit: RunningApp, sender: Sender, sender_limit: int
) -> None:
    """A 200 KB module log does not block the outbox: the event is stored without its log
    (marked truncated, its stage and task intact), kept whole beside the outbox, and the
    events after it arrive."""
    deliverer = sender(small_limit.url, sender_limit)
    before = deliverer.events.emit("service.boot")
    big = deliverer.events.emit(
        "process.end", task_id="t-big", module="m", exit_code=0, log="L" * 200_000, stage="outgoing"
    )
    after = deliverer.events.emit("service.stop")
    assert deliverer.deliver_pending()

    stored = _stored(small_limit)
    assert set(stored) == {before.id, big.id, after.id}
    data = stored[big.id]["data"]
    assert isinstance(data, dict)
    assert data["truncated"]["dropped"] == ["log"]
    assert data["stage"] == "outgoing"
    task = small_limit.client.get("/api/v1/tasks/t-big").json()["task"]
    assert task["state"] == "outgoing"
    (kept,) = deliverer.outbox.folder.glob("*.oversized")
    assert Event.model_validate_json(kept.read_text()) == big
    assert deliverer.outbox.sealed_segments() == []
