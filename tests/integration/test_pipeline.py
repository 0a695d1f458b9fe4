"""The whole pipeline under `mercure run`: storescu -> receiver -> router -> processor (a command
module) -> dispatcher -> Orthanc, and the bookkeeper's record of every step, failures included."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mercure.core.installed import installed_services
from mercure.core.logs import log_files
from mercure.testing.installation import (
    BookkeeperClient,
    MercureProcess,
    copy_module,
    is_in_order,
    write_config,
)
from mercure.testing.peers import Orthanc
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]

SERIES = 3
INSTANCES = 4
TIMELINE = [
    "series.received",
    "task.created",
    "task.process.begin",
    "task.process.log",
    "task.process.complete",
    "dispatch.begin",
    "dispatch.complete",
    "task.completed",
]
"""What every task's timeline shows, in this order, from reception to dispatch."""
RESULT = {"copied": INSTANCES, "findings": ["none"]}
FAILING_MODULE = 'import sys\nprint("cannot read this input", flush=True)\nsys.exit(3)\n'


@pytest.fixture
def pipeline(tmp_path: Path, orthanc: Orthanc) -> Iterator[tuple[MercureProcess, BookkeeperClient]]:
    """`mercure run`: 'routine' series through the copy module to Orthanc, 'analysis' ones only
    processed, 'broken' ones to a failing module, 'unreachable' ones to a target nobody serves;
    and a client of its bookkeeper."""
    receiver_port, bookkeeper_port = free_port(), free_port()
    script = tmp_path / "failing_module.py"
    script.write_text(FAILING_MODULE)
    failing = {"runner": "command", "command": [sys.executable, str(script)]}
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        targets={
            "orthanc": {
                "type": "dicom",
                "host": "127.0.0.1",
                "port": orthanc.dicom_port,
                "aet_target": orthanc.aet,
            },
            # Nothing listens there: every attempt is refused.
            "nowhere": {"type": "dicom", "host": "127.0.0.1", "port": free_port()},
        },
        modules={"copier": copy_module(tmp_path), "failing": failing},
        rules={
            "ct_both": {
                "rule": "tags.SeriesDescription == 'routine'",
                "action": "both",
                "processing_module": ["copier"],
                "targets": ["orthanc"],
            },
            "analysis": {
                "rule": "tags.SeriesDescription == 'analysis'",
                "action": "process",
                "processing_module": ["copier"],
            },
            "broken": {
                "rule": "tags.SeriesDescription == 'broken'",
                "action": "process",
                "processing_module": ["failing"],
            },
            "unreachable": {
                "rule": "tags.SeriesDescription == 'unreachable'",
                "action": "route",
                "targets": ["nowhere"],
            },
        },
    )
    mercure = MercureProcess(
        "run",
        config,
        listen_port=receiver_port,
        health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
    )
    client = BookkeeperClient(bookkeeper_port)
    with mercure:
        yield mercure, client
        assert mercure.shutdown() == 0, mercure.log_text()
    client.close()


def _send(port: int, series: list[GeneratedSeries]) -> None:
    for one in series:
        storescu(port, one.folder, calling_aet="CT01", called_aet="MERCURE")


def test_series_reach_orthanc_and_every_step_is_in_the_bookkeeper(
    tmp_path: Path, orthanc: Orthanc, pipeline: tuple[MercureProcess, BookkeeperClient]
) -> None:
    """Each CT series is processed and sent; the bookkeeper has its whole timeline and result."""
    mercure, bookkeeper = pipeline
    series = [
        generate_series(
            tmp_path / f"series{n}", "ct", INSTANCES, seed=100 + n, series_description="routine"
        )
        for n in range(SERIES)
    ]
    assert mercure.listen_port is not None
    _send(mercure.listen_port, series)

    expected = set().union(*(s.sop_instance_uids for s in series))
    wait_until(lambda: orthanc.sop_instance_uids() == expected, timeout=45, interval=0.2)

    def completed() -> list[dict[str, object]]:
        tasks = bookkeeper.tasks(state="success")
        return tasks if len(tasks) == SERIES else []

    wait_until(completed, timeout=20, interval=0.2, message="every task success in bookkeeper")

    for one in series:
        (record,) = bookkeeper.tasks(series_uid=one.series_uid)
        assert (record["accession"], record["patient_id"]) == (
            one.accession_number,
            one.patient_id,
        )
        assert record["state"] == "success" and record["action"] == "both"
        assert record["rules"] == ["ct_both"]
        assert [(t["target"], t["state"]) for t in record["targets"]] == [("orthanc", "complete")]

        def timeline(task_id: str = record["task_id"]) -> list[str]:
            # Each service delivers its own events, so the last ones may still be on their way.
            kinds = [event["kind"] for event in bookkeeper.timeline(task_id)]
            return kinds if set(TIMELINE) <= set(kinds) else []

        kinds = wait_until(timeline, timeout=15, interval=0.2, message="timeline complete")
        assert is_in_order(kinds, TIMELINE), kinds
        for kind in TIMELINE:
            assert kinds.count(kind) == 1, (kind, kinds)

        detail = bookkeeper.task(record["task_id"])
        (run,) = detail["processing"]
        assert (run["module"], run["success"], run["exit_code"]) == ("copier", True, 0)
        assert run["result"] == RESULT
        assert f"copied {INSTANCES} files" in run["log"]
        # Created, processed, completed: each a version of task.json; the last holds the result.
        versions = bookkeeper.get(f"tasks/{record['task_id']}/versions")
        assert [v["kind"] for v in versions][-1] == "task.completed"
        assert versions[-1]["document"]["process"][0]["output"] == RESULT

        (found,) = bookkeeper.series(accession=one.accession_number)
        assert found["series_uid"] == one.series_uid
        assert found["instance_count"] == INSTANCES
        assert found["modality"] == "CT" and found["sender_aet"] == "CT01"
        assert [s["series_uid"] for s in bookkeeper.series(patient_id=one.patient_id)] == [
            one.series_uid
        ]

    # Every process of `mercure run` keeps its own log file in the data folder.
    data_dir = Path(yaml.safe_load(mercure.config_path.read_text())["data_dir"])
    files = log_files(data_dir)
    # receiver.processes (auto: one per core) runs receivers beside the receiver's own
    # process; each keeps a log file of its own (receiver@<host>_<n>).
    receivers = {name for name in files if name.startswith("receiver@")}
    assert set(files) - receivers == {"supervisor", *installed_services()}, sorted(files)
    assert len(receivers) != 1, sorted(files)
    assert "starting router" in files["supervisor"].read_text()


def test_processed_only_and_failed_tasks_are_recorded_with_their_outcome(
    tmp_path: Path, pipeline: tuple[MercureProcess, BookkeeperClient]
) -> None:
    """Processed-only tasks complete; a failing module or dead target ends in error, with why."""
    mercure, bookkeeper = pipeline
    analysis, broken, unreachable = (
        generate_series(tmp_path / name, "tiny", 2, seed=300 + n, series_description=name)
        for n, name in enumerate(("analysis", "broken", "unreachable"))
    )
    assert mercure.listen_port is not None
    _send(mercure.listen_port, [analysis, broken, unreachable])

    def finished() -> bool:
        states = [task["state"] for task in bookkeeper.tasks()]
        return sorted(states) == ["error", "error", "success"]

    wait_until(finished, timeout=30, interval=0.2, message="three tasks finished in bookkeeper")

    (record,) = bookkeeper.tasks(series_uid=analysis.series_uid)
    assert record["state"] == "success" and record["targets"] == []
    kinds = [event["kind"] for event in bookkeeper.timeline(record["task_id"])]
    assert kinds[-2:] == ["task.process.complete", "task.completed"], kinds
    (run,) = bookkeeper.task(record["task_id"])["processing"]
    assert run["result"] == {"copied": 2, "findings": ["none"]}

    (record,) = bookkeeper.tasks(series_uid=broken.series_uid)
    assert record["fail_stage"] == "processing"
    assert "exit code 3" in record["fail_reason"]
    (run,) = bookkeeper.task(record["task_id"])["processing"]
    assert (run["module"], run["success"], run["exit_code"]) == ("failing", False, 3)
    assert "cannot read this input" in run["log"] and run["result"] is None
    task_id = record["task_id"]

    def timeline_complete() -> list[str]:
        # The processor's events may reach the bookkeeper before the router's task.created,
        # which its own outbox delivers a moment later.
        kinds = [event["kind"] for event in bookkeeper.timeline(task_id)]
        expected = ["task.created", "task.process.begin", "task.process.log"]
        return kinds if is_in_order(kinds, expected) else []

    kinds = wait_until(timeline_complete, timeout=10, interval=0.2, message="broken's timeline")
    assert kinds[-1] == "task.process.error", kinds

    (record,) = bookkeeper.tasks(series_uid=unreachable.series_uid)
    assert record["fail_stage"] == "dispatch"
    assert [(t["target"], t["state"]) for t in record["targets"]] == [("nowhere", "error")]
    timeline = bookkeeper.timeline(record["task_id"])
    failures = [e["data"] for e in timeline if e["kind"] == "dispatch.failed"]
    assert [(f["attempt"], f["will_retry"]) for f in failures] == [(1, True), (2, True), (3, False)]
    kinds = [event["kind"] for event in timeline]
    assert kinds.count("task.update") == 2 and kinds[-1] == "task.failed", kinds
    versions = bookkeeper.get(f"tasks/{record['task_id']}/versions")
    assert versions[-1]["document"]["info"]["fail_stage"] == "dispatch"
