"""Scale-out through Celery with real brokers: tasks spread over ``mercure worker`` processes."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from mercure.core.config import load_config
from mercure.core.datafolder import Stage
from mercure.core.workqueue import Publisher, queue_name
from mercure.supervisor.run import status_report
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.peers.process import PeerProcess, is_listening
from mercure.testing.ports import free_port
from mercure.testing.scaleout import Cluster
from mercure.testing.series import GeneratedSeries
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.peers]

MakeCluster = Callable[..., Cluster]


def _parent_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[1])


def test_tasks_spread_over_three_workers_each_processed_once(
    broker_url: str, cluster_factory: MakeCluster
) -> None:
    """100 tasks, three workers: every task processed exactly once, by all three workers."""
    cluster = cluster_factory(broker_url, nap=0.2)
    cluster.start_feeders("processor")
    cluster.start_workers(["w1", "w2", "w3"])
    ids = {cluster.add_task() for _ in range(100)}
    wait_until(lambda: cluster.in_stage(Stage.SUCCESS) == ids, timeout=120, interval=0.2)
    assert cluster.run_counts("end") == dict.fromkeys(ids, 1)
    assert cluster.run_counts("start") == dict.fromkeys(ids, 1)
    done = [e for e in cluster.events("worker.task") if e.data["outcome"] == "done"]
    assert len(done) == 100
    assert {e.instance for e in done} == {"w1", "w2", "w3"}
    assert all(e.data["host"] for e in done)
    report = status_report(load_config(cluster.config_path))
    for name in ("w1", "w2", "w3"):
        assert f"/{name}" in report, report


def test_installations_sharing_a_broker_may_name_their_workers_alike(
    broker_url: str, cluster_factory: MakeCluster
) -> None:
    """Two installations on one broker (own queue prefixes), a worker "w1" on one host in each.

    Celery's control queue of a worker is named after its node name; on RabbitMQ it is
    exclusive, so two workers with one node name cannot both start. The node name carries the
    queue prefix, so the two installations' workers do not meet there.
    """
    first = cluster_factory(broker_url, nap=0.05)
    second = cluster_factory(broker_url, nap=0.05)
    first.start_workers(["w1"])
    second.start_workers(["w1"])  # fails with RESOURCE_LOCKED on RabbitMQ if the names meet
    first.start_feeders("processor")
    second.start_feeders("processor")
    one, two = first.add_task(), second.add_task()
    wait_until(lambda: first.in_stage(Stage.SUCCESS) == {one}, timeout=60, interval=0.1)
    wait_until(lambda: second.in_stage(Stage.SUCCESS) == {two}, timeout=60, interval=0.1)
    assert first.run_counts("end") == {one: 1}
    assert second.run_counts("end") == {two: 1}


def test_a_second_worker_under_a_name_in_use_refuses_to_start(
    cluster_factory: MakeCluster,
) -> None:
    """Instance names are unique across hosts: a second ``--instance w1`` while w1 runs (here
    or on another host sharing the data folder) exits 1 and names the holder, instead of
    overwriting its heartbeat."""
    if not is_listening(6379):
        pytest.skip("redis does not listen on 127.0.0.1:6379")
    cluster = cluster_factory("redis://127.0.0.1:6379/0", nap=0.05)
    first = cluster.start_worker("w1")
    second = cluster.launch_worker("w1", "worker-w1-again")
    assert second.wait(60) == 1
    log = (cluster.root / "worker-w1-again.log").read_text()
    assert f"a worker of that name runs on {socket.gethostname()} (pid {first.pid}" in log
    assert first.poll() is None


def test_one_worker_with_concurrency_two_runs_two_tasks_at_once(
    broker_url: str, cluster_factory: MakeCluster
) -> None:
    """``--concurrency 2``: two tasks run side by side in one worker, each once."""
    cluster = cluster_factory(broker_url, nap=1.5)
    cluster.start_feeders("processor")
    cluster.start_workers(["w1"], "--concurrency", "2")
    ids = {cluster.add_task() for _ in range(2)}
    wait_until(lambda: cluster.in_stage(Stage.SUCCESS) == ids, timeout=60, interval=0.1)
    lines = [line.split()[0] for line in cluster.runs.read_text().splitlines()]
    assert lines == ["start", "start", "end", "end"]  # the second began before the first ended
    assert cluster.run_counts("end") == dict.fromkeys(ids, 1)
    done = [e for e in cluster.events("worker.task") if e.data["outcome"] == "done"]
    assert {e.instance for e in done} == {"w1"}


def test_worker_killed_mid_task_its_task_completes_on_another_once(
    broker_url: str, cluster_factory: MakeCluster
) -> None:
    """kill -9 of the worker running a task: another worker completes it, exactly once."""
    cluster = cluster_factory(broker_url, nap=2.0)
    cluster.start_feeders("processor")
    names = ["w1", "w2"]
    workers = {p.pid: name for p, name in zip(cluster.start_workers(names), names, strict=True)}
    task_id = cluster.add_task()
    wait_until(lambda: cluster.run_counts("start")[task_id] == 1, timeout=30)
    module_pid = int(cluster.runs.read_text().split()[2])
    victim = workers[_parent_of(module_pid)]  # the worker running the module
    survivor = ({"w1", "w2"} - {victim}).pop()
    os.kill(cluster.workers[victim].pid, signal.SIGKILL)
    cluster.workers[victim].wait()
    wait_until(lambda: cluster.in_stage(Stage.SUCCESS) == {task_id}, timeout=60, interval=0.1)
    completed = [e for e in cluster.events("task.process.complete") if e.task_id == task_id]
    assert len(completed) == 1
    assert completed[0].instance == survivor
    assert cluster.run_counts("start")[task_id] == 2  # begun by both, completed once
    assert not cluster.in_stage(Stage.PROCESSING)


def test_broker_restarted_in_the_middle_everything_completes(
    private_broker: PeerProcess, cluster_factory: MakeCluster
) -> None:
    """The broker goes down and comes back while tasks wait: every task completes once."""
    cluster = cluster_factory(private_broker.url, nap=0.2)  # type: ignore[attr-defined]
    cluster.start_feeders("processor")
    cluster.start_workers(["w1", "w2"])
    ids = {cluster.add_task() for _ in range(20)}
    wait_until(lambda: len(cluster.in_stage(Stage.SUCCESS)) >= 3, timeout=60, interval=0.05)
    private_broker.stop()
    more = {cluster.add_task() for _ in range(5)}  # enter the stage while the broker is down
    private_broker.start()
    wait_until(lambda: cluster.in_stage(Stage.SUCCESS) == ids | more, timeout=90, interval=0.2)
    assert cluster.run_counts("end") == dict.fromkeys(ids | more, 1)


def test_reconciliation_republishes_a_dropped_message(
    broker_url: str, cluster_factory: MakeCluster
) -> None:
    """A message purged from the broker is published again; the task then runs once."""
    cluster = cluster_factory(broker_url, nap=0.1)
    cluster.start_feeders("processor")
    task_id = cluster.add_task()
    settings = load_config(cluster.config_path).config.scale_out
    publisher = Publisher(settings)
    try:
        wait_until(lambda: publisher.depth("processing", "default") == 1, timeout=30)
        name = queue_name(settings, "processing", "default")
        with publisher.app.connection_for_write() as connection:
            publisher.app.amqp.queues[name].bind(connection.default_channel).purge()
        assert publisher.depth("processing", "default") == 0
        # Published again by the next reconciliation (every second here).
        wait_until(lambda: publisher.depth("processing", "default") == 1, timeout=30)
    finally:
        publisher.close()
    cluster.start_worker("w1")
    wait_until(lambda: cluster.in_stage(Stage.SUCCESS) == {task_id}, timeout=30)
    assert cluster.run_counts("end") == {task_id: 1}


def test_urgent_task_overtakes_a_backlog(broker_url: str, cluster_factory: MakeCluster) -> None:
    """An urgent task published after a backlog of normal ones runs before most of them."""
    cluster = cluster_factory(broker_url, nap=0.05)
    cluster.start_feeders("processor")
    settings_path = cluster.config_path
    backlog = [cluster.add_task() for _ in range(8)]
    publisher = Publisher(load_config(settings_path).config.scale_out)
    try:
        wait_until(lambda: publisher.depth("processing", "default") == 8, timeout=30)
        urgent = cluster.add_task(priority="urgent")
        wait_until(lambda: publisher.depth("processing", "default") == 9, timeout=30)
    finally:
        publisher.close()
    cluster.start_worker("w1")
    wait_until(lambda: len(cluster.in_stage(Stage.SUCCESS)) == 9, timeout=60, interval=0.1)
    order = [line.split()[1] for line in cluster.runs.read_text().splitlines() if "start" in line]
    assert set(order) == {*backlog, urgent}
    assert order.index(urgent) <= 1  # the worker may hold one normal task already


def test_end_to_end_router_processing_dispatch_to_a_folder_target(
    broker_url: str, cluster_factory: MakeCluster, tiny_series: GeneratedSeries
) -> None:
    """storescu -> receiver -> router -> worker (processing) -> worker (dispatch) -> folder."""
    cluster = cluster_factory(broker_url, nap=0.05)
    port = free_port()
    cluster.config["receiver"] = {
        "listeners": [{"name": "main", "host": "127.0.0.1", "port": port, "aet": "MERCURE"}],
        "fsync": False,
        "min_free_disk_mb": 10,
    }
    cluster.config["router"] = {"series_complete_trigger": 1, "rescan_interval": 5}
    cluster.config["rules"] = {
        "all": {
            "rule": "True",
            "action": "both",
            "processing_module": "sleepy",
            "targets": ["archive"],
        }
    }
    cluster.start_feeders("receiver", "router", "processor", "dispatcher")
    cluster.start_workers(["w1"], "--stages", "processing")
    cluster.start_workers(["w2"], "--stages", "dispatch")
    wait_until(lambda: is_listening(port), timeout=60, message="receiver listening")
    storescu(port, tiny_series.folder, called_aet="MERCURE")
    archive = cluster.root / "archive"
    wait_until(
        lambda: archive.exists() and len(list(archive.rglob("*.dcm"))) == len(tiny_series.paths),
        timeout=90,
        interval=0.1,
    )
    wait_until(lambda: len(cluster.in_stage(Stage.SUCCESS)) == 1, timeout=30)
    (task_id,) = cluster.in_stage(Stage.SUCCESS)
    assert cluster.run_counts("end") == {task_id: 1}
    processed = [e for e in cluster.events("task.process.complete") if e.task_id == task_id]
    delivered = [e for e in cluster.events("dispatch.complete") if e.task_id == task_id]
    assert [e.instance for e in processed] == ["w1"]
    assert [e.instance for e in delivered] == ["w2"]
