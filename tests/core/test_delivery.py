"""The outbox deliverer: events reach the bookkeeper in batches, are deleted only when
confirmed, wait while it is down, and never hold up the service.

The bookkeeper here is a recording HTTP server (the test double of the delivery transport);
delivery to the real bookkeeper is tested in tests/bookkeeper/test_service.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mercure.core.config import MercureConfig
from mercure.core.delivery import OutboxDeliverer, RetryPolicy
from mercure.core.events import EventClient, Outbox
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until

FAST = RetryPolicy(initial=0.02, maximum=0.1)


class Recorder:
    """A stand-in bookkeeper: records what is posted, answers with the statuses it is given."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.batches: list[list[dict[str, Any]]] = []
        self.authorization: list[str | None] = []
        self.answers: list[int] = []
        """Statuses for the next posts; 200 when empty."""
        self.hold: threading.Event | None = None
        self.in_flight = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event recorded, in arrival order."""
        return [event for batch in self.batches for event in batch]

    def start(self) -> Recorder:
        """Serve in a background thread."""
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.in_flight += 1
                if recorder.hold is not None:
                    recorder.hold.wait(10)
                status = recorder.answers.pop(0) if recorder.answers else 200
                if status == 200:
                    recorder.batches.append(body["events"])
                    recorder.authorization.append(self.headers.get("Authorization"))
                self._answer(status, {"stored": len(body["events"]), "duplicates": 0})

            def do_GET(self) -> None:
                self._answer(200, {"status": "ok"})

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A running recording bookkeeper."""
    server = Recorder().start()
    yield server
    server.stop()


@pytest.fixture
def events(tmp_path: Path) -> Iterator[EventClient]:
    """An event client on a fresh outbox."""
    client = EventClient(Outbox(tmp_path / "outbox", "router@test"), "router", "test")
    yield client
    client.outbox.close()


def _segment_files(client: EventClient) -> list[str]:
    return sorted(p.name for p in client.outbox.folder.iterdir() if p.suffix in (".open", ".jsonl"))


def _deliverer(client: EventClient, url: str, **kwargs: Any) -> OutboxDeliverer:
    kwargs.setdefault("seal_interval", 0.02)
    kwargs.setdefault("retry", FAST)
    return OutboxDeliverer(client, url, "secret", **kwargs)


def test_events_reach_the_bookkeeper_promptly_and_leave_the_outbox(
    recorder: Recorder, events: EventClient
) -> None:
    """Emitted events arrive without anyone sealing the outbox, and their segment is deleted."""
    deliverer = _deliverer(events, recorder.url)
    deliverer.start()
    try:
        emitted = [events.emit("rule.error", message=f"event {n}").id for n in range(3)]
        wait_until(lambda: len(recorder.events) == 3, timeout=5)
        assert [event["id"] for event in recorder.events] == emitted
        wait_until(lambda: _segment_files(events) == [], timeout=5)
        assert recorder.authorization[0] == "Bearer secret"
    finally:
        deliverer.stop()


def test_large_segment_goes_in_batches(recorder: Recorder, events: EventClient) -> None:
    """1,200 events go as batches of 500, 500 and 200."""
    for n in range(1200):
        events.emit("series.received", series_uid=str(n))
    assert _deliverer(events, recorder.url).deliver_pending()
    assert [len(batch) for batch in recorder.batches] == [500, 500, 200]
    assert _segment_files(events) == []


def test_segment_is_kept_until_every_batch_is_confirmed(
    recorder: Recorder, events: EventClient
) -> None:
    """A failure after the first batch keeps the segment; the retry sends only the rest."""
    emitted = [events.emit("series.received", series_uid=str(n)).id for n in range(1200)]
    deliverer = _deliverer(events, recorder.url)
    recorder.answers = [200, 503]

    assert not deliverer.deliver_pending()
    assert len(recorder.events) == 500
    assert len(_segment_files(events)) == 1
    assert deliverer.failures == 1

    assert deliverer.deliver_pending()
    assert [event["id"] for event in recorder.events] == emitted
    assert _segment_files(events) == []


def test_events_wait_in_the_outbox_while_the_bookkeeper_is_down(events: EventClient) -> None:
    """With nothing listening, events stay in one segment; they arrive once it comes up."""
    port = free_port()
    deliverer = _deliverer(events, f"http://127.0.0.1:{port}")
    deliverer.start()
    recorder = Recorder(port)
    try:
        emitted = [events.emit("rule.error").id]
        wait_until(lambda: deliverer.failures >= 3, timeout=5, message="retries")
        emitted += [events.emit("rule.error").id for _ in range(20)]
        wait_until(lambda: deliverer.failures >= 5, timeout=5, message="more retries")
        assert len(_segment_files(events)) <= 2
        assert deliverer.last_error

        recorder.start()

        wait_until(lambda: len(recorder.events) == len(emitted), timeout=5)
        assert sorted(event["id"] for event in recorder.events) == sorted(emitted)
        wait_until(lambda: deliverer.failures == 0, timeout=5)
    finally:
        deliverer.stop()
        recorder.stop()


def test_backoff_doubles_up_to_its_cap() -> None:
    """Retry delays double from the initial value and stop at the maximum (jitter aside)."""
    exact = RetryPolicy(initial=1.0, maximum=8.0, jitter=0.0)
    assert [exact.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    jittered = RetryPolicy(initial=1.0, maximum=8.0, jitter=0.2)
    assert all(3.2 <= jittered.delay(3) <= 4.8 for _ in range(100))


def test_rejected_segment_is_set_aside_and_reported(
    recorder: Recorder, events: EventClient
) -> None:
    """A segment refused as malformed becomes <seq>.rejected and an error event says so."""
    events.emit("rule.error", message="refused")
    events.outbox.seal()
    accepted = events.emit("rule.error", message="accepted").id
    deliverer = _deliverer(events, recorder.url)
    recorder.answers = [422]

    assert deliverer.deliver_pending()
    assert deliverer.deliver_pending()

    rejected = [p.name for p in events.outbox.folder.iterdir() if p.suffix == ".rejected"]
    assert len(rejected) == 1
    kinds = [(event["kind"], event["message"]) for event in recorder.events]
    assert kinds[0] == ("rule.error", "accepted")
    assert recorder.events[0]["id"] == accepted
    assert kinds[1][0] == "outbox.rejected"
    assert recorder.events[1]["data"]["segment"] == rejected[0]


def test_dropped_events_are_reported_once(recorder: Recorder, tmp_path: Path) -> None:
    """Events the bounded outbox dropped are counted in one warning event, not again later."""
    outbox = Outbox(tmp_path / "outbox", "router@test", max_bytes=3000, segment_bytes=600)
    client = EventClient(outbox, "router", "test")
    for n in range(60):
        client.emit("series.received", series_uid=str(n))
    assert outbox.dropped()["events"] > 0

    for _ in range(3):
        assert _deliverer(client, recorder.url).deliver_pending()

    reports = [event for event in recorder.events if event["kind"] == "outbox.dropped"]
    assert {r["severity"] for r in reports} == {"warning"}
    # Sealing the report itself may push the oldest segment out: that is reported next pass.
    assert sum(r["data"]["events"] for r in reports) == outbox.dropped()["events"]
    assert reports[-1]["data"]["total"] == outbox.dropped()["events"]
    outbox.close()


def test_stop_delivers_the_last_events(recorder: Recorder, events: EventClient) -> None:
    """Events emitted just before stop are delivered by stop's final attempt."""
    deliverer = _deliverer(events, recorder.url, seal_interval=60.0)
    deliverer.start()
    last = events.emit("service.stop").id
    deliverer.stop()
    assert [event["id"] for event in recorder.events] == [last]


def test_stop_returns_promptly_when_the_bookkeeper_hangs(
    recorder: Recorder, events: EventClient
) -> None:
    """A bookkeeper that never answers cannot hold up the service's stop."""
    recorder.hold = threading.Event()
    deliverer = _deliverer(events, recorder.url)
    deliverer.start()
    events.emit("rule.error")
    wait_until(lambda: recorder.in_flight == 1, timeout=5)
    started = time.monotonic()
    deliverer.stop(timeout=0.2)
    assert time.monotonic() - started < 2.0
    assert recorder.events == []
    assert len(_segment_files(events)) == 1


def test_follows_the_configured_url_and_token(recorder: Recorder, events: EventClient) -> None:
    """from_config uses bookkeeper.url and api_key; a reload switches the token."""
    config = MercureConfig.model_validate({"bookkeeper": {"url": recorder.url, "api_key": "k1"}})
    deliverer = OutboxDeliverer.from_config(events, config)
    events.emit("rule.error")
    assert deliverer.deliver_pending()
    reloaded = MercureConfig.model_validate({"bookkeeper": {"url": recorder.url, "api_key": "k2"}})
    deliverer.apply_config(reloaded)
    events.emit("rule.error")
    assert deliverer.deliver_pending()
    assert recorder.authorization == ["Bearer k1", "Bearer k2"]
