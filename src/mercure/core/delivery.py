"""The outbox deliverer: moves a service's events from its durable outbox to the bookkeeper.

Each service process runs one, in a background thread, so the service itself never waits for
the bookkeeper. It seals the open outbox segment about once a second (so events flow within a
second or two), posts the events of each sealed segment in batches to
``POST <bookkeeper>/api/v1/events`` with the bookkeeper token, and deletes a segment only after
the bookkeeper confirmed every event in it. The bookkeeper stores each event id once, so a
batch re-sent after a lost answer is harmless: delivery is at-least-once, storage exactly-once.

While the bookkeeper cannot be reached, or refuses the key (401: the key is re-read for every
attempt, so a rotated key file is picked up), it retries with capped exponential backoff (and
stops sealing, so that an outage does not leave thousands of tiny segments; the outbox keeps
its size bound by dropping its oldest segments, which this deliverer reports as an
``outbox.dropped`` warning event). A segment the bookkeeper rejects as malformed (HTTP 400 or
422, which retrying cannot fix) is renamed ``<seq>.rejected`` and kept for inspection.

Batches stay under the bookkeeper's request limit (``bookkeeper.max_request_mb``): they are cut
by size as well as by count, and a batch the bookkeeper still finds too large (413: its limit
is lower than this sender's) is halved until it fits. A single event larger than the limit
(a huge module log, say) is kept whole beside the outbox as ``<seq>-<n>.oversized`` and sent
without its large ``data`` fields, marked ``data.truncated``: its kind, time, task and state
still reach the bookkeeper, and the events after it are not held up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mercure.core.apikey import ApiKeys
from mercure.core.atomic import atomic_write_bytes, atomic_write_json
from mercure.core.config import MercureConfig
from mercure.core.datafolder import DataFolder
from mercure.core.errors import MercureError
from mercure.core.events import Event, EventClient, Outbox, read_segment
from mercure.core.logs import service_var

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
HEALTH_PATH = "/health"
REPORTED_DROPS = "dropped.reported.json"
_REJECTED_STATUS = frozenset({400, 413, 422})
DEFAULT_MAX_REQUEST = 4 << 20
"""The bookkeeper's default request limit (``bookkeeper.max_request_mb``)."""
_ENVELOPE = len(b'{"events":[]}')
KEEP_FIELD_BYTES = 1024
"""In an event over the request limit, ``data`` fields up to this size (as JSON) are kept."""
OVERSIZED_SUFFIX = ".oversized"
MAIN_THREAD_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD})
"""Signals the delivery thread leaves to the main thread (see ``_run``): every one a supervisor
waits for, a child's exit included."""
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


class _TooLarge(Exception):
    """The bookkeeper refused a batch as too large (413)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class _Rejected(Exception):
    """The bookkeeper refused a batch as malformed; retrying cannot help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class _Item:
    """An event of a segment, with its place in the segment and its JSON."""

    index: int
    event: Event
    encoded: bytes
    shrunk: bool = False


TokenSource = Callable[[], str | None]


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
        token: str | TokenSource | None = None,
        *,
        batch_size: int = 500,
        max_request_bytes: int = DEFAULT_MAX_REQUEST,
        seal_interval: float = 1.0,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.events = events
        self.outbox = events.outbox
        self.batch_size = batch_size
        self.max_request_bytes = max_request_bytes
        self.seal_interval = seal_interval
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.delivered = 0
        """Events the bookkeeper confirmed since start."""
        self.failures = 0
        """Consecutive failed attempts; 0 while the bookkeeper answers."""
        self.last_error: str | None = None
        self._url = url.rstrip("/")
        self._token: TokenSource = _token_source(token)
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
        """Follow a changed bookkeeper URL, key or limit (after a configuration reload)."""
        self.max_request_bytes = config.bookkeeper.max_request_mb << 20
        self.configure(config.bookkeeper.effective_url(), ApiKeys.from_config(config).current)

    def configure(self, url: str, token: str | TokenSource | None) -> None:
        """Deliver to ``url`` with ``token`` (or the key it returns) from the next attempt on."""
        with self._lock:
            self._url, self._token = url.rstrip("/"), _token_source(token)
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

    def close(self) -> None:
        """Close the HTTP connections; for callers of :meth:`deliver_pending` without the
        background thread (which closes them itself when it stops)."""
        if self._thread is None and self._client is not None:
            self._client.close()
            self._client = None

    def wake(self) -> None:
        """Seal and deliver now instead of at the next interval (safe from any thread)."""
        self._wakeup.set()

    # --- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        # These signals are the main thread's: a supervisor blocks them in its own thread only
        # and waits for them (sigtimedwait). Whenever the main thread was not waiting, a thread
        # that left them open would take them with the default action: killed by a SIGTERM, a
        # SIGCHLD (a service's exit) ignored, so the restart waited for the next tick.
        signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
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
        limit = self.max_request_bytes
        try:
            for batch in _batches(read_segment(segment), self.batch_size, limit, skip=done):
                self._post_fitting(segment, batch)
        except FileNotFoundError:
            # The outbox dropped it for being over its size bound; reported as a drop.
            self._confirmed.pop(segment.name, None)
            return
        self.outbox.acknowledge(segment)
        self._confirmed.pop(segment.name, None)

    def _post_fitting(self, segment: Path, items: list[_Item]) -> None:
        """Post ``items``, halving the batch (or shrinking a lone event) until it fits."""
        if len(items) == 1 and not items[0].shrunk and _body_size(items) > self.max_request_bytes:
            items = [self._shrink(segment, items[0])]
        try:
            self._post(items)
        except _TooLarge as exc:
            if len(items) > 1:
                half = len(items) // 2
                self._post_fitting(segment, items[:half])
                self._post_fitting(segment, items[half:])
                return
            if items[0].shrunk:
                raise _Rejected(exc.status, exc.detail) from None
            self._post_fitting(segment, [self._shrink(segment, items[0])])
            return
        self._confirmed[segment.name] = items[-1].index + 1
        self.delivered += len(items)

    def _shrink(self, segment: Path, item: _Item) -> _Item:
        """The event without its large data fields; the whole event is kept beside the outbox."""
        kept = segment.with_name(f"{segment.stem}-{item.index}{OVERSIZED_SUFFIX}")
        if not kept.exists():
            atomic_write_bytes(kept, item.encoded + b"\n")
        event = _shrunk(item.event, len(item.encoded), self.max_request_bytes)
        log.warning(
            "event %s (%s, task %s) is %d bytes, over the bookkeeper's request limit: sent "
            "without its large fields, kept whole as %s",
            item.event.id,
            item.event.kind,
            item.event.task_id or "-",
            len(item.encoded),
            kept.name,
        )
        return _Item(item.index, event, event.model_dump_json().encode(), shrunk=True)

    def _http(self) -> tuple[httpx.Client, str]:
        with self._lock:
            url, source = self._url, self._token
        try:
            token = source()
        except MercureError as exc:
            raise _Unreachable(f"no API key: {exc}") from None
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

    def _post(self, batch: list[_Item]) -> None:
        client, url = self._http()
        body = b'{"events":[' + b",".join(item.encoded for item in batch) + b"]}"
        try:
            response = client.post(
                url + EVENTS_PATH, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise _Unreachable(f"{type(exc).__name__}: {exc}") from None
        if response.status_code == 200:
            return
        detail = response.text[:500]
        if response.status_code == 413:
            raise _TooLarge(413, detail)
        if response.status_code in _REJECTED_STATUS:
            raise _Rejected(response.status_code, detail)
        raise _Unreachable(f"HTTP {response.status_code}: {detail}")

    def _probe(self) -> bool:
        try:
            client, url = self._http()
            return client.get(url + HEALTH_PATH).status_code == 200
        except (httpx.HTTPError, _Unreachable):
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


def _batches(
    events: Iterator[Event], size: int, max_bytes: int, *, skip: int
) -> Iterator[list[_Item]]:
    """Batches of at most ``size`` events whose request body stays within ``max_bytes``; an
    event too large for any batch comes alone (to be shrunk)."""
    batch: list[_Item] = []
    used = _ENVELOPE
    for index, event in enumerate(events):
        if index < skip:
            continue
        item = _Item(index, event, event.model_dump_json().encode())
        cost = len(item.encoded) + 1  # the comma
        if batch and (len(batch) >= size or used + cost > max_bytes):
            yield batch
            batch, used = [], _ENVELOPE
        batch.append(item)
        used += cost
    if batch:
        yield batch


def _body_size(items: list[_Item]) -> int:
    return _ENVELOPE + sum(len(item.encoded) + 1 for item in items)


def _shrunk(event: Event, size: int, max_bytes: int) -> Event:
    """``event`` with only its small ``data`` fields (state, stage, target, reason ...) and a
    ``truncated`` note of what was left out, so that it fits in a request."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in event.data.items():
        if len(json.dumps(value, default=str)) <= KEEP_FIELD_BYTES:
            kept[key] = value
        else:
            dropped.append(key)
    note = {"bytes": size, "dropped": dropped[:50]}
    smaller = event.model_copy(
        update={"data": {**kept, "truncated": note}, "message": event.message[:1000]}
    )
    if len(smaller.model_dump_json()) + _ENVELOPE < max_bytes:
        return smaller
    # Many small fields together are still too much: keep only the note.
    return event.model_copy(update={"data": {"truncated": note}, "message": event.message[:200]})


def _token_source(token: str | TokenSource | None) -> TokenSource:
    if callable(token):
        return token
    return lambda: token


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
