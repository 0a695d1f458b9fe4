"""Scale-out through Celery: throughput of a wait-bound module with 1, 2 and 4 workers.

For each broker (the machine's Redis and RabbitMQ), in one run:

- throughput: ``--per-worker`` tasks per worker of a module that waits ``--nap`` seconds
  (0.5 s by default: a job bound by waiting, as an AI model on a remote GPU or a slow archive),
  from the first task entering ``processing/`` to the last reaching ``success/``, with 1, 2 and
  4 ``mercure worker`` processes. The reference is linear scaling of the one-worker run in the
  same round: ratio = rate(n) / (n x rate(1)); the goal is >= 0.9;
- the broker's added latency per task: ``--latency-tasks`` tasks entered one at a time while
  a worker is idle, each with a module that does not nap; the time from the message's
  publication to the worker starting it (the ``queue_wait_ms`` of each ``worker.task`` event),
  median and p95; the goal is a median under 20 ms.

    .venv/bin/python bench/bench_workers.py [--per-worker 8] [--nap 0.5] [--rounds 1]
        [--latency-tasks 30] [--brokers redis,rabbitmq] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mercure.core.datafolder import Stage
from mercure.testing.peers.process import is_listening
from mercure.testing.scaleout import Cluster
from mercure.testing.wait import wait_until

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/0", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}


def throughput(work: Path, broker: str, workers: int, per_worker: int, nap: float) -> float:
    """Tasks per second with ``workers`` workers (their start-up excluded)."""
    cluster = Cluster(work, broker, nap=nap)
    try:
        cluster.start_feeders("processor")
        cluster.start_workers([f"w{n}" for n in range(workers)])
        count = workers * per_worker
        began = time.monotonic()
        ids = {cluster.add_task() for _ in range(count)}
        wait_until(lambda: cluster.in_stage(Stage.SUCCESS) == ids, timeout=60 + 4 * count * nap)
        elapsed = time.monotonic() - began
    finally:
        cluster.stop()
    return count / elapsed


def latency(work: Path, broker: str, tasks: int) -> list[float]:
    """Milliseconds from publication to start, one task at a time to an idle worker."""
    cluster = Cluster(work, broker, nap=0.0)
    try:
        cluster.start_feeders("processor")
        cluster.start_worker("w0")
        for _ in range(tasks):
            task_id = cluster.add_task()
            wait_until(
                lambda task_id=task_id: task_id in cluster.in_stage(Stage.SUCCESS),  # type: ignore[misc]
                timeout=60,
            )
        waits = [
            float(event.data["queue_wait_ms"])
            for event in cluster.events("worker.task")
            if "queue_wait_ms" in event.data
        ]
    finally:
        cluster.stop()
    return waits


def main() -> None:
    """Run the cases and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-worker", type=int, default=8, help="tasks per worker")
    parser.add_argument("--nap", type=float, default=0.5, help="seconds each task waits")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--latency-tasks", type=int, default=30)
    parser.add_argument("--brokers", default="redis,rabbitmq")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    root = args.work or Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        for name in args.brokers.split(","):
            url, port = BROKERS[name]
            if not is_listening(port):
                print(f"{name}: not listening on {port}; skipped")
                continue
            print(f"\n{name}: {args.per_worker} tasks per worker, {args.nap:g} s each")
            for round_number in range(args.rounds):
                rates = {}
                for workers in (1, 2, 4):
                    folder = root / f"{name}-{round_number}-{workers}"
                    rates[workers] = throughput(folder, url, workers, args.per_worker, args.nap)
                    to_linear = rates[workers] / (workers * rates[1])
                    to_naps = rates[workers] / (workers / args.nap)
                    print(
                        f"  round {round_number + 1}, {workers} worker(s): "
                        f"{rates[workers]:6.2f} tasks/s  ratio to linear {to_linear:.2f}"
                        f"  (to the naps alone {to_naps:.2f})"
                    )
            waits = sorted(latency(root / f"{name}-latency", url, args.latency_tasks))
            p95 = waits[min(len(waits) - 1, round(0.95 * (len(waits) - 1)))]
            print(
                f"  broker latency (published -> started), {len(waits)} tasks: "
                f"median {statistics.median(waits):.1f} ms, p95 {p95:.1f} ms"
            )
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
