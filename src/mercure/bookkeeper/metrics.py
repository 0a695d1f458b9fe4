"""``/metrics``: counters and gauges in the Prometheus text exposition format (version 0.0.4).

Counters live in this process (they restart at zero with it, which Prometheus' ``rate()``
handles); gauges are read when scraped: tasks by state from the database, queue depths from
the data folder. Label values come only from fixed lists or from service names, so the number
of series stays small whatever the producers send.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping

from mercure.bookkeeper import kinds
from mercure.core.events import Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_KNOWN = frozenset(kinds.KNOWN_KINDS)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if labels:
        inner = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


class Metrics:
    """Counters of what this bookkeeper process received; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stored: Counter[tuple[str, str]] = Counter()
        self._dropped: Counter[str] = Counter()
        self._duplicates = 0
        self._batches: Counter[str] = Counter()
        self._ingest_seconds = 0.0

    def record_batch(self, new_events: Iterable[Event], duplicates: int, seconds: float) -> None:
        """Count a stored batch: its new events by service and kind, and its duplicates."""
        with self._lock:
            self._batches["stored"] += 1
            self._duplicates += duplicates
            self._ingest_seconds += seconds
            for event in new_events:
                if event.kind.startswith(kinds.AUDIT_PREFIX):
                    kind = "audit"
                else:
                    kind = event.kind if event.kind in _KNOWN else "other"
                self._stored[(event.service, kind)] += 1
                if event.kind == kinds.OUTBOX_DROPPED:
                    dropped = event.data.get("events", 0)
                    self._dropped[event.service] += dropped if isinstance(dropped, int) else 0

    def record_failure(self) -> None:
        """Count a batch the database could not store."""
        with self._lock:
            self._batches["failed"] += 1

    def render(
        self,
        *,
        database_up: bool,
        task_states: Mapping[str, int],
        queue_depths: Mapping[str, int],
    ) -> str:
        """The exposition text."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[str]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)

        with self._lock:
            family(
                "mercure_bookkeeper_events_stored_total",
                "counter",
                "Events stored, by sending service and kind.",
                [
                    _sample(
                        "mercure_bookkeeper_events_stored_total",
                        {"service": service, "kind": kind},
                        count,
                    )
                    for (service, kind), count in sorted(self._stored.items())
                ],
            )
            family(
                "mercure_bookkeeper_events_duplicate_total",
                "counter",
                "Events received again and ignored (retried deliveries).",
                [_sample("mercure_bookkeeper_events_duplicate_total", {}, self._duplicates)],
            )
            family(
                "mercure_bookkeeper_batches_total",
                "counter",
                "Event batches received, by result.",
                [
                    _sample("mercure_bookkeeper_batches_total", {"result": result}, count)
                    for result, count in sorted({"stored": 0, "failed": 0, **self._batches}.items())
                ],
            )
            family(
                "mercure_bookkeeper_ingest_seconds_total",
                "counter",
                "Time spent storing event batches.",
                [_sample("mercure_bookkeeper_ingest_seconds_total", {}, self._ingest_seconds)],
            )
            family(
                "mercure_outbox_dropped_events_total",
                "counter",
                "Events services dropped because their outbox was full (as they reported).",
                [
                    _sample("mercure_outbox_dropped_events_total", {"service": service}, count)
                    for service, count in sorted(self._dropped.items())
                ],
            )
        family(
            "mercure_bookkeeper_database_up",
            "gauge",
            "Whether the bookkeeper's database answered.",
            [_sample("mercure_bookkeeper_database_up", {}, 1 if database_up else 0)],
        )
        family(
            "mercure_tasks",
            "gauge",
            "Tasks known to the bookkeeper, by state.",
            [
                _sample("mercure_tasks", {"state": state}, count)
                for state, count in sorted(task_states.items())
            ],
        )
        family(
            "mercure_queue_depth",
            "gauge",
            "Entries in each stage folder of the data folder.",
            [
                _sample("mercure_queue_depth", {"stage": stage}, depth)
                for stage, depth in sorted(queue_depths.items())
            ],
        )
        return "\n".join(lines) + "\n"
