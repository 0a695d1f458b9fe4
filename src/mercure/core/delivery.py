"""The outbox deliverer: moves a service's events from its durable outbox to the bookkeeper.

Each service process runs one, in a background thread, so the service itself never waits for
the bookkeeper. It seals the open outbox segment about once a second (so events flow within a
second or two), posts the events of each sealed segment in batches to
``POST <bookkeeper>/api/v1/events`` with the bookkeeper token, and deletes a segment only after
the bookkeeper confirmed every event in it. The bookkeeper stores each event id once, so a
batch re-sent after a lost answer is harmless: delivery is at-least-once, storage exactly-once.

While the bookkeeper cannot be reached it retries with capped exponential backoff (and stops
sealing, so that an outage does not leave thousands of tiny segments; the outbox keeps its
size bound by dropping its oldest segments, which this deliverer reports as an
``outbox.dropped`` warning event). A segment the bookkeeper rejects as malformed (HTTP 400,
413 or 422, which retrying cannot fix) is renamed ``<seq>.rejected`` and kept for inspection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from mercure.core.atomic import atomic_write_json
from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder
from mercure.core.events import Event, EventClient, Outbox, read_segment
from mercure.core.logs import service_var

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
HEALTH_PATH = "/health"
REPORTED_DROPS = "dropped.reported.json"
_REJECTED_STATUS = frozenset({400, 413, 422})
WARN_AFTER = 3
"""Consecutive failures before the deliverer logs a warning (earlier ones are INFO)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter, so that services do not retry in lockstep."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (``failures`` >= 1)."""
        base = min(self.maximum, self.initial * self.factor ** max(failures - 1, 0))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class _Unreachable(Exception):
    """The bookkeeper did not confirm a batch; try again later."""


class _Rejected(Exception):
    """The bookkeeper refused a batch as malformed; retrying cannot help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class OutboxDeliverer:
    """Delivers one outbox to the bookkeeper from a background thread.

    ``start()`` once, ``stop()`` at the end (after the last event was emitted and before the
    outbox is closed): stop makes one last attempt, bounded by its timeout, and never blocks
    longer.
    """

    def __init__(
        self,
        events: EventClient,
        url: str,
        token: str | None = None,
        *,
        batch_size: int = 500,
        seal_interval: float = 1.0,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.events = events
        self.outbox = events.outbox
        self.batch_size = batch_size
        self.seal_interval = seal_interval
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.delivered = 0
        """Events the bookkeeper confirmed since start."""
        self.failures = 0
        """Consecutive failed attempts; 0 while the bookkeeper answers."""
        self.last_error: str | None = None
        self._url = url.rstrip("/")
        self._token = token
        self._client: httpx.Client | None = None
        self._confirmed: dict[str, int] = {}
        self._retry_at = 0.0
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, events: EventClient, config: MercureConfig) -> OutboxDeliverer:
        """A deliverer to the bookkeeper that ``config`` names."""
        deliverer = cls(events, config.bookkeeper.effective_url())
        deliverer.apply_config(config)
        return deliverer

    def apply_config(self, config: MercureConfig) -> None:
        """Follow a changed bookkeeper URL or token (after a configuration reload)."""
        key = config.bookkeeper.api_key
        self.configure(
            config.bookkeeper.effective_url(), key.get_secret_value() if key is not None else None
        )

    def configure(self, url: str, token: str | None) -> None:
        """Deliver to ``url`` with ``token`` from the next attempt on."""
        with self._lock:
            if (url.rstrip("/"), token) == (self._url, self._token):
                return
            self._url, self._token = url.rstrip("/"), token
            self._retry_at = 0.0
        self.wake()

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start delivering in a background thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"deliver {self.outbox.folder.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Make a last delivery attempt (at most ``timeout`` seconds), then stop the thread.

        What is not delivered by then stays in the outbox for the next start.
        """
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("event delivery still busy at stop; the rest is sent next start")
            self._thread = None

    def wake(self) -> None:
        """Seal and deliver now instead of at the next interval (safe from any thread)."""
        self._wakeup.set()

    # --- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        # A new thread starts with an empty context: name the service in its log lines.
        service_var.set(self.events.service)
        try:
            while True:
                stopping = self._stopping.is_set()
                wait = self._retry_at - time.monotonic()
                if wait > 0 and not stopping:
                    self._sleep(wait)
                    continue
                if not stopping or self.failures == 0:
                    self.deliver_pending()
                if stopping:
                    return
                self._sleep(max(self._retry_at - time.monotonic(), self.seal_interval))
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _sleep(self, seconds: float) -> None:
        self._wakeup.wait(seconds)
        self._wakeup.clear()

    def deliver_pending(self) -> bool:
        """One pass: seal, deliver every sealed segment; False if the bookkeeper failed.

        Called by the background thread; tests and tools may call it directly instead.
        """
        self._report_drops()
        healthy = self.failures == 0
        if not healthy and not self.outbox.sealed_segments():
            # Probe instead of sealing: an outage must not cut the outbox into tiny segments.
            if not self._probe():
                return self._failed("bookkeeper health check failed")
            healthy = True
        if healthy:
            self.outbox.seal()
        for segment in self.outbox.sealed_segments():
            try:
                self._deliver_segment(segment)
            except _Unreachable as exc:
                return self._failed(str(exc))
            except _Rejected as exc:
                self._set_aside(segment, exc)
        if self.failures >= WARN_AFTER:
            log.warning("bookkeeper reachable again; event delivery resumed")
        self.failures, self.last_error, self._retry_at = 0, None, 0.0
        return True

    def _failed(self, reason: str) -> bool:
        self.failures += 1
        delay = self.retry.delay(self.failures)
        self._retry_at = time.monotonic() + delay
        # A few refusals are normal (services start while the bookkeeper still boots, the
        # bookkeeper's own outbox at its stop); a longer outage is worth a warning.
        if self.failures == WARN_AFTER or (
            self.failures > WARN_AFTER and reason != self.last_error
        ):
            log.warning("cannot deliver events to %s: %s (retrying)", self._url, reason)
        elif self.failures < WARN_AFTER:
            log.info("cannot deliver events to %s yet: %s (retrying)", self._url, reason)
        self.last_error = reason
        return False

    def _deliver_segment(self, segment: Path) -> None:
        done = self._confirmed.get(segment.name, 0)
        try:
            for batch in _batches(read_segment(segment), self.batch_size, skip=done):
                self._post(batch)
                done += len(batch)
                self._confirmed[segment.name] = done
                self.delivered += len(batch)
        except FileNotFoundError:
            # The outbox dropped it for being over its size bound; reported as a drop.
            self._confirmed.pop(segment.name, None)
            return
        self.outbox.acknowledge(segment)
        self._confirmed.pop(segment.name, None)

    def _http(self) -> tuple[httpx.Client, str]:
        with self._lock:
            url, token = self._url, self._token
        if self._client is None:
            # httpx writes headers and body separately; without TCP_NODELAY the body waits for
            # the server's delayed ACK of the headers (40 ms per batch).
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout, connect=5.0),
                transport=httpx.HTTPTransport(
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
                ),
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client.headers.clear()
        self._client.headers.update(headers)
        return self._client, url

    def _post(self, batch: list[Event]) -> None:
        client, url = self._http()
        body = b'{"events":[' + b",".join(e.model_dump_json().encode() for e in batch) + b"]}"
        try:
            response = client.post(
                url + EVENTS_PATH, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise _Unreachable(f"{type(exc).__name__}: {exc}") from None
        if response.status_code == 200:
            return
        detail = response.text[:500]
        if response.status_code in _REJECTED_STATUS:
            raise _Rejected(response.status_code, detail)
        raise _Unreachable(f"HTTP {response.status_code}: {detail}")

    def _probe(self) -> bool:
        client, url = self._http()
        try:
            return client.get(url + HEALTH_PATH).status_code == 200
        except httpx.HTTPError:
            return False

    def _set_aside(self, segment: Path, exc: _Rejected) -> None:
        kept = segment.with_suffix(".rejected")
        try:
            segment.rename(kept)
        except FileNotFoundError:
            return
        self._confirmed.pop(segment.name, None)
        log.error("the bookkeeper rejected %s (%s); kept as %s", segment.name, exc, kept.name)
        self.events.emit(
            "outbox.rejected",
            severity="error",
            message=f"the bookkeeper rejected outbox segment {segment.name}: HTTP {exc.status}",
            segment=kept.name,
            status=exc.status,
            detail=exc.detail,
        )

    def _report_drops(self) -> None:
        total = self.outbox.dropped()["events"]
        marker = self.outbox.folder / REPORTED_DROPS
        try:
            reported = int(json.loads(marker.read_text())["events"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            reported = 0
        if total <= reported:
            return
        self.events.emit(
            "outbox.dropped",
            severity="warning",
            message=f"event outbox over its size limit: {total - reported} oldest events dropped",
            events=total - reported,
            total=total,
        )
        atomic_write_json(marker, {"events": total})


def _batches(events: Iterator[Event], size: int, *, skip: int) -> Iterator[list[Event]]:
    batch: list[Event] = []
    for index, event in enumerate(events):
        if index < skip:
            continue
        batch.append(event)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


COMMAND_DELIVERY_TIMEOUT = 5.0
"""How long a command-line run waits at its end for the bookkeeper to take its events."""


@contextlib.contextmanager
def command_events(config: MercureConfig, service: str) -> Iterator[EventClient]:
    """Events of a command-line run (``mercure clean``, ``requeue`` ...), written as a service's.

    They go to their own outbox (``<service>@<host>-cli``), and one delivery attempt of at most
    :data:`COMMAND_DELIVERY_TIMEOUT` seconds is made at the end; what the bookkeeper does not
    take then stays in that outbox and goes with the next run.
    """
    data = DataFolder(config.data_dir)
    instance = f"{socket.gethostname()}-cli"
    outbox = Outbox(
        data.outbox_dir,
        f"{service}@{instance}",
        max_bytes=config.events.outbox_max_mb << 20,
        fsync=config.events.fsync,
    )
    events = EventClient(outbox, service, instance)
    deliverer = OutboxDeliverer.from_config(events, config)
    deliverer.start()
    try:
        yield events
    finally:
        deliverer.stop(timeout=COMMAND_DELIVERY_TIMEOUT)
        outbox.close()
