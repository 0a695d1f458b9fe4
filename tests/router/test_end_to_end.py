"""Real senders: DCMTK storescu -> `mercure receiver` -> `mercure router` -> stage folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from router_harness import RouterProcess, dicom_names, sop_files

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.task import Task, read_task
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.receiver import RunningReceiver, receiver_config, start_receiver
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]

TARGETS = {
    "pacs": {"type": "dicom", "host": "127.0.0.1", "port": 104},
    "archive": {"type": "dicom", "host": "127.0.0.1", "port": 105},
    "research": {"type": "folder", "folder": "/tmp"},
}


@dataclass
class Pipeline:
    """A receiver and a router on one data folder."""

    receiver: RunningReceiver
    data: DataFolder
    root: Path

    def send(self, *series: GeneratedSeries, calling_aet: str = "STORESCU") -> None:
        """Send series with storescu, one association for all of them."""
        paths = [path for item in series for path in item.paths]
        storescu(self.receiver.port, *paths, calling_aet=calling_aet, called_aet="MERCURE")

    def tasks(self, stage: Stage) -> dict[str, tuple[Task, set[str]]]:
        """Task id -> (task.json, instance files) of a stage."""
        return {p.name: (read_task(p), dicom_names(p)) for p in self.data.entries(stage)}

    def wait_tasks(self, stage: Stage, count: int, timeout: float = 20) -> list[Task]:
        """Wait until ``count`` tasks are in ``stage``; their task.json."""
        wait_until(lambda: len(self.data.entries(stage)) >= count, timeout=timeout)
        return [task for task, _files in self.tasks(stage).values()]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """Factory: ``pipeline(router=..., rules=..., listener=...)`` -> running receiver + router."""
    running: list[tuple[RunningReceiver, RouterProcess]] = []

    def make(
        *, router: dict[str, Any], rules: dict[str, Any], listener: dict[str, Any] | None = None
    ) -> Pipeline:
        config = receiver_config(
            tmp_path / "data",
            listener=listener,
            extra={
                "router": {"rescan_interval": 600, **router},
                "rules": rules,
                "targets": TARGETS,
                "modules": {"seg": {"runner": "command", "command": ["/bin/true"]}},
                "bookkeeper": {"port": free_port()},
            },
        )
        config_path = tmp_path / "mercure.yaml"
        receiver = start_receiver(config, config_path)
        data = DataFolder(tmp_path / "data")
        router_process = RouterProcess(config_path, data).start()
        running.append((receiver, router_process))
        return Pipeline(receiver, data, tmp_path)

    yield make
    for receiver, router_process in running:
        router_process.kill()
        receiver.stop()


def made(root: Path, name: str, count: int = 3, **kwargs: Any) -> GeneratedSeries:
    """A tiny series generated under ``root``."""
    return generate_series(root / name, "tiny", count, **kwargs)


def test_routing_by_modality_calling_ae_and_description_with_fallback_and_discard(
    pipeline: Callable[..., Pipeline],
) -> None:
    """Four series from storescu take the four ways the rules give them."""
    p = pipeline(
        router={"series_complete_trigger": 0.5},
        rules={
            "ct": {"rule": "tags.Modality == 'CT'", "targets": "pacs"},
            "scanner2": {"rule": "tags.SenderAET == 'SCANNER2'", "targets": "archive"},
            "no_localizers": {
                "rule": "'LOCALIZER' in tags.SeriesDescription.upper()",
                "action": "discard",
            },
            "rest": {"rule": "True", "targets": "research", "fallback": True},
        },
    )
    ct = made(p.root, "ct", modality="CT", seed=1)
    mr = made(p.root, "mr", modality="MR", seed=2)
    localizer = made(p.root, "loc", modality="CT", seed=3, series_description="Localizer")
    other = made(p.root, "us", modality="US", seed=4)
    p.send(ct, localizer, other, calling_aet="CTSCANNER")
    p.send(mr, calling_aet="SCANNER2")
    p.wait_tasks(Stage.OUTGOING, 3)
    p.wait_tasks(Stage.DISCARD, 1)
    routed = {
        task.info.uid: (task.dispatch.target_name if task.dispatch else [], files)
        for task, files in p.tasks(Stage.OUTGOING).values()
    }
    assert routed == {
        ct.series_uid: (["pacs"], sop_files(ct)),
        mr.series_uid: (["archive"], sop_files(mr)),
        other.series_uid: (["research"], sop_files(other)),
    }
    [(discarded, files)] = p.tasks(Stage.DISCARD).values()
    assert discarded.info.uid == localizer.series_uid and files == sop_files(localizer)
    assert discarded.info.reason == "discarded by rule 'no_localizers'"
    assert {task.info.sender_aet for task, _ in p.tasks(Stage.OUTGOING).values()} == {
        "CTSCANNER",
        "SCANNER2",
    }


def test_release_of_the_association_completes_the_series(
    pipeline: Callable[..., Pipeline],
) -> None:
    """complete_on_release: routed seconds after storescu ends, not after the quiet time."""
    p = pipeline(
        router={"series_complete_trigger": 3600},
        rules={"all": {"rule": "True", "targets": "pacs"}},
        listener={"complete_on_release": True, "release_grace": 0.3},
    )
    series = made(p.root, "s", 4)
    p.send(series)
    [task] = p.wait_tasks(Stage.OUTGOING, 1)
    assert task.info.uid == series.series_uid


def test_late_arrival_becomes_a_series_task_of_its_own(pipeline: Callable[..., Pipeline]) -> None:
    """An instance sent after its series was routed is routed as a new task."""
    p = pipeline(
        router={"series_complete_trigger": 0.5},
        rules={"all": {"rule": "True", "targets": "pacs"}},
    )
    first = made(p.root, "first", 3, seed=9)
    p.send(first)
    p.wait_tasks(Stage.OUTGOING, 1)
    late = made(p.root, "late", 1, seed=9, first_instance_number=7)
    p.send(late)
    p.wait_tasks(Stage.OUTGOING, 2)
    tasks = p.tasks(Stage.OUTGOING).values()
    assert {task.info.uid for task, _ in tasks} == {first.series_uid}
    assert sorted((files for _, files in tasks), key=len) == [sop_files(late), sop_files(first)]


def test_studies_complete_by_timeout_and_by_required_series(
    pipeline: Callable[..., Pipeline],
) -> None:
    """A CT study leaves after its timeout, an MR study once T1 and T2 are in."""
    p = pipeline(
        router={"series_complete_trigger": 0.5, "study_complete_trigger": 1.5},
        rules={
            "ct_study": {
                "rule": "tags.Modality == 'CT'",
                "targets": "pacs",
                "action_trigger": "study",
            },
            "mr_study": {
                "rule": "tags.Modality == 'MR'",
                "action": "process",
                "processing_module": "seg",
                "action_trigger": "study",
                "study_trigger_condition": "received_series",
                "study_trigger_series": "'T1' and 'T2'",
            },
        },
    )
    ct = [made(p.root, f"ct{n}", 2, seed=20, series_number=n, modality="CT") for n in (1, 2)]
    mr_t1 = made(p.root, "t1", 2, seed=30, series_number=1, modality="MR", series_description="T1")
    mr_t2 = made(p.root, "t2", 2, seed=30, series_number=2, modality="MR", series_description="T2")
    p.send(*ct, mr_t1)
    wait_until(lambda: len(p.data.entries(Stage.STUDIES)) == 2, timeout=20)
    p.send(mr_t2)
    [mr_task] = p.wait_tasks(Stage.PROCESSING, 1)
    assert mr_task.info.uid == mr_t1.study_uid and mr_task.study is not None
    assert sorted(mr_task.study.received_series) == ["T1", "T2"]
    [ct_task] = p.wait_tasks(Stage.OUTGOING, 1)
    assert ct_task.info.uid == ct[0].study_uid
    [(_task, files)] = p.tasks(Stage.OUTGOING).values()
    assert files == sop_files(ct[0]) | sop_files(ct[1])
    assert p.data.entries(Stage.STUDIES) == []
