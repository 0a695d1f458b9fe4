"""The Celery side of ``mercure worker``: the one task, and the worker that consumes it.

The worker runs Celery's thread pool inside its own process, so a task's claim (an ``flock``)
belongs to the worker process: killed with ``-9``, the kernel drops the claim with it, the
broker hands the unacknowledged message to another worker (RabbitMQ at once, when the
connection closes; Redis after ``scale_out.visibility_timeout``), and that worker's claim
succeeds. Celery's own stop handling applies: the first SIGTERM lets running tasks finish (a
warm shutdown), a second one stops now.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from mercure.core.workqueue import TASK_NAME, WorkStage, celery_app, kombu_queue, queue_name

if TYPE_CHECKING:
    from mercure.core.config.models import ScaleOutConfig
    from mercure.worker.runtime import WorkerRuntime


def node_name(settings: ScaleOutConfig, instance: str) -> str:
    """The worker's Celery node name: ``<queue prefix>.<instance>@<host>``.

    Celery names a worker's control queue after it, and RabbitMQ holds that queue exclusively:
    two installations sharing one broker (each with its own ``queue_prefix``) whose workers
    have the same instance name on one host would otherwise refuse each other's start.
    """
    return f"{settings.queue_prefix}.{instance}@{socket.gethostname()}"


def consume(
    runtime: WorkerRuntime,
    settings: ScaleOutConfig,
    queues: list[str],
    *,
    concurrency: int,
    loglevel: str = "INFO",
) -> int:
    """Run the Celery worker until it is stopped; its exit code."""
    app = celery_app(settings, name="mercure-worker")
    names = [queue_name(settings, stage, queue) for stage in runtime.stages for queue in queues]
    app.conf.task_queues = [kombu_queue(settings, name) for name in names]

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def work(
        task_id: str,
        stage: WorkStage,
        queue: str = "default",
        priority: str = "normal",
        published_at: float | None = None,
    ) -> str:
        return runtime.run(task_id, stage, published_at)

    worker = app.Worker(
        hostname=node_name(settings, runtime.instance),
        queues=names,
        concurrency=concurrency,
        pool="threads",
        loglevel=loglevel,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
        optimization="fair",
    )
    runtime.start()
    code = 0
    try:
        worker.start()
        code = int(worker.exitcode or 0)
    finally:
        runtime.stop(code)
    return code
