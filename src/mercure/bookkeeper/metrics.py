"""``/metrics``: what operators alert on, in the Prometheus exposition formats (prometheus_client).

Two kinds of numbers:

- **from the events as they are stored** (counters and histograms that live in this process and
  restart at zero with it, which Prometheus' ``rate()`` handles): events stored, batches,
  duplicates, drops the services reported, dispatch outcomes per target, failed tasks per
  stage, and the time each stage took (:data:`STAGES`);
- **read when scraped** (gauges): tasks by state from the database, queue depths and free disk
  of the data folder, and the backlog of every service's event outbox in the data folder.

Label values come from fixed lists, or are capped (:class:`_BoundedLabel`), so that however
many targets or services the events name, the number of series stays small.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from mercure.bookkeeper import kinds
from mercure.core.events import Event

log = logging.getLogger(__name__)

_KNOWN = frozenset(kinds.KNOWN_KINDS)
STAGE_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
"""Histogram buckets in seconds: from a fast dispatch to a day in a queue."""
STAGES = ("received_to_routed", "processing", "dispatch", "received_to_completed")
"""The ``stage`` label of ``mercure_stage_duration_seconds``."""
MAX_LABEL_VALUES = 100
"""Distinct values one free-text label (target, service) may take; more count as ``other``."""
PENDING_BEGINS = 10_000
"""dispatch.begin events kept in memory until their dispatch ended (oldest forgotten first)."""

ReceivedLookup = Callable[[set[str], set[str]], tuple[dict[str, datetime], dict[str, datetime]]]
"""Given series and study UIDs: when the last instance of each series (and of each study's
series) was received."""


class _BoundedLabel:
    """A label whose values are kept to :data:`MAX_LABEL_VALUES`; later new ones are 'other'."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= MAX_LABEL_VALUES:
            return "other"
        self._seen.add(value)
        return value


@dataclass
class _Pending:
    """dispatch.begin times by (task, target), for the duration at dispatch.complete/failed."""

    begins: OrderedDict[tuple[str, str], datetime] = field(default_factory=OrderedDict)

    def begin(self, key: tuple[str, str], at: datetime) -> None:
        self.begins[key] = at
        self.begins.move_to_end(key)
        while len(self.begins) > PENDING_BEGINS:
            self.begins.popitem(last=False)

    def end(self, key: tuple[str, str]) -> datetime | None:
        return self.begins.pop(key, None)


class Metrics:
    """The counters and histograms of one bookkeeper process; safe to use from any thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_stored = Counter(
            "mercure_bookkeeper_events_stored",
            "Events stored, by sending service and kind.",
            ["service", "kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "mercure_bookkeeper_events_duplicate",
            "Events received again and ignored (retried deliveries).",
            registry=r,
        )
        self.batches = Counter(
            "mercure_bookkeeper_batches",
            "Event batches received, by result.",
            ["result"],
            registry=r,
        )
        for result in ("stored", "failed"):
            self.batches.labels(result)
        self.ingest_seconds = Histogram(
            "mercure_bookkeeper_ingest_seconds",
            "Time to store one batch of events.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.outbox_dropped = Counter(
            "mercure_outbox_dropped_events",
            "Events services dropped because their outbox was full (as they reported).",
            ["service"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "mercure_stage_duration_seconds",
            "Time a stage took: last instance received to task created (the quiet period "
            "included), a module run, one dispatch attempt, last instance received to done.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.dispatch_results = Counter(
            "mercure_dispatch_attempts",
            "Dispatch attempts by target and result (complete, retrying, failed).",
            ["target", "result"],
            registry=r,
        )
        self.tasks_failed = Counter(
            "mercure_tasks_failed",
            "Tasks that went to error/, by the stage that failed.",
            ["fail_stage"],
            registry=r,
        )
        self._lock = threading.Lock()
        self._service = _BoundedLabel()
        self._target = _BoundedLabel()
        self._fail_stage = _BoundedLabel()
        self._pending = _Pending()

    # --- recording -----------------------------------------------------------------------
    def record_batch(
        self,
        new_events: Iterable[Event],
        duplicates: int,
        seconds: float,
        received: ReceivedLookup | None = None,
    ) -> None:
        """Count a stored batch and observe the stage durations its new events end."""
        events = list(new_events)
        self.batches.labels("stored").inc()
        self.duplicates.inc(duplicates)
        self.ingest_seconds.observe(seconds)
        with self._lock:
            for event in events:
                self._count(event)
            self._observe_stages(events, received)

    def record_failure(self) -> None:
        """Count a batch the database could not store."""
        self.batches.labels("failed").inc()

    def _count(self, event: Event) -> None:
        service = self._service(event.service)
        if event.kind.startswith(kinds.AUDIT_PREFIX):
            kind = "audit"
        else:
            kind = event.kind if event.kind in _KNOWN else "other"
        self.events_stored.labels(service, kind).inc()
        data = event.data
        if event.kind == kinds.OUTBOX_DROPPED:
            dropped = data.get("events", 0)
            if isinstance(dropped, int) and dropped > 0:
                self.outbox_dropped.labels(service).inc(dropped)
        if event.kind in kinds.FAILURE_KINDS:
            stage = data.get("fail_stage") or kinds.FAIL_STAGE_BY_KIND.get(event.kind) or "unknown"
            self.tasks_failed.labels(self._fail_stage(str(stage))).inc()
        target = data.get("target")
        if event.kind in kinds.TARGET_STATE_BY_KIND and isinstance(target, str):
            self._count_dispatch(event, self._target(target))

    def _count_dispatch(self, event: Event, target: str) -> None:
        key = (event.task_id or "", target)
        if event.kind == kinds.DISPATCH_BEGIN:
            self._pending.begin(key, event.time)
            return
        if event.kind == kinds.DISPATCH_COMPLETE:
            result = "complete"
        else:
            final = event.data.get("final")
            result = "retrying" if event.data.get("will_retry") or final is False else "failed"
        self.dispatch_results.labels(target, result).inc()
        began = self._pending.end(key)
        if began is not None:
            self._observe("dispatch", (event.time - began).total_seconds())

    def _observe_stages(self, events: list[Event], received: ReceivedLookup | None) -> None:
        for event in events:
            if event.kind in kinds.PROCESSING_RUN_KINDS:
                started = _moment(event.data.get("started_at"))
                if started is not None:
                    self._observe("processing", (event.time - started).total_seconds())
        ends = [e for e in events if e.kind in (kinds.TASK_CREATED, kinds.TASK_COMPLETED)]
        if not ends or received is None:
            return
        series_uids = {e.series_uid for e in ends if e.series_uid}
        study_uids = {e.study_uid for e in ends if e.study_uid and not e.series_uid}
        by_series, by_study = received(series_uids, study_uids)
        for event in ends:
            if event.kind == kinds.TASK_CREATED and not event.series_uid:
                continue  # a study collecting its first series: routing is the series'
            last = (
                by_series.get(event.series_uid)
                if event.series_uid
                else by_study.get(event.study_uid or "")
            )
            if last is None:
                continue
            stage = (
                "received_to_routed"
                if event.kind == kinds.TASK_CREATED
                else ("received_to_completed")
            )
            self._observe(stage, (event.time - last).total_seconds())

    def _observe(self, stage: str, seconds: float) -> None:
        # A negative span is clock skew between hosts: no measurement.
        if seconds >= 0:
            self.stage_seconds.labels(stage).observe(seconds)

    # --- exposition ----------------------------------------------------------------------
    def watch(
        self,
        *,
        task_states: Callable[[], Mapping[str, int] | None],
        queue_depths: Callable[[], Mapping[str, int]],
        data_folder: Path | None,
    ) -> None:
        """Add the gauges read at each scrape (once per registry)."""
        self.registry.register(_Gauges(task_states, queue_depths, data_folder))

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for; (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class _Gauges(Collector):
    """Gauges computed when scraped: database, data folder, outboxes."""

    def __init__(
        self,
        task_states: Callable[[], Mapping[str, int] | None],
        queue_depths: Callable[[], Mapping[str, int]],
        data_folder: Path | None,
    ) -> None:
        self.task_states = task_states
        self.queue_depths = queue_depths
        self.data_folder = data_folder

    def collect(self) -> Iterator[Metric]:
        """One snapshot of every gauge."""
        states = self.task_states()
        up = GaugeMetricFamily(
            "mercure_bookkeeper_database_up", "Whether the bookkeeper's database answered."
        )
        up.add_metric([], 0 if states is None else 1)
        yield up
        tasks = GaugeMetricFamily(
            "mercure_tasks", "Tasks known to the bookkeeper, by state.", labels=["state"]
        )
        for state, count in sorted((states or {}).items()):
            tasks.add_metric([state], count)
        yield tasks
        depth = GaugeMetricFamily(
            "mercure_queue_depth",
            "Entries in each stage folder of the data folder.",
            labels=["stage"],
        )
        for stage, count in sorted(self.queue_depths().items()):
            depth.add_metric([stage], count)
        yield depth
        if self.data_folder is not None:
            yield from _disk(self.data_folder)
            yield from _outboxes(self.data_folder / "outbox")


def _disk(folder: Path) -> Iterator[Metric]:
    try:
        usage = shutil.disk_usage(folder)
    except OSError as exc:
        log.warning("cannot read the disk usage of %s: %s", folder, exc.strerror)
        return
    free = GaugeMetricFamily(
        "mercure_data_folder_free_bytes", "Free space on the data folder's filesystem."
    )
    free.add_metric([], usage.free)
    size = GaugeMetricFamily(
        "mercure_data_folder_size_bytes", "Size of the data folder's filesystem."
    )
    size.add_metric([], usage.total)
    yield free
    yield size


@dataclass
class _Backlog:
    segments: int = 0
    size: int = 0
    oldest: float | None = None
    set_aside: dict[str, int] = field(default_factory=lambda: {"rejected": 0, "oversized": 0})


def _outboxes(root: Path) -> Iterator[Metric]:
    """Events waiting in each service's outbox (all its instances summed), from the files."""
    backlogs: dict[str, _Backlog] = {}
    now = time.time()
    try:
        folders = [entry for entry in root.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        folders = []
    for folder in folders:
        backlog = backlogs.setdefault(folder.name.split("@")[0], _Backlog())
        try:
            entries = list(folder.iterdir())
        except FileNotFoundError:
            continue
        for entry in entries:
            stem, _, suffix = entry.name.partition(".")
            if suffix in ("rejected", "oversized"):
                backlog.set_aside[suffix] += 1
            elif suffix in ("jsonl", "open") and stem.isdigit():
                try:
                    backlog.size += entry.stat().st_size
                except FileNotFoundError:
                    continue  # delivered meanwhile
                backlog.segments += 1
                # Segment numbers are microseconds since the epoch of their creation.
                created = int(stem) / 1e6
                backlog.oldest = created if backlog.oldest is None else min(backlog.oldest, created)
    families = {
        "segments": GaugeMetricFamily(
            "mercure_outbox_backlog_segments",
            "Outbox segments not yet delivered to the bookkeeper, by service.",
            labels=["service"],
        ),
        "bytes": GaugeMetricFamily(
            "mercure_outbox_backlog_bytes",
            "Bytes of events not yet delivered to the bookkeeper, by service.",
            labels=["service"],
        ),
        "age": GaugeMetricFamily(
            "mercure_outbox_oldest_seconds",
            "Age of the oldest undelivered outbox segment, by service (0 when none).",
            labels=["service"],
        ),
        "aside": GaugeMetricFamily(
            "mercure_outbox_set_aside_files",
            "Outbox files kept for inspection: segments the bookkeeper rejected, events over "
            "its request limit.",
            labels=["service", "reason"],
        ),
    }
    for service, backlog in sorted(backlogs.items()):
        families["segments"].add_metric([service], backlog.segments)
        families["bytes"].add_metric([service], backlog.size)
        age = 0.0 if backlog.oldest is None else max(now - backlog.oldest, 0.0)
        families["age"].add_metric([service], age)
        for reason, count in sorted(backlog.set_aside.items()):
            families["aside"].add_metric([service, reason], count)
    yield from families.values()
