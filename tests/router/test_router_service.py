"""``mercure router`` as a process: notifications, stopping, and being killed mid-work."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from router_harness import RouterProcess, dicom_names, service_config, sop_files

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.notifications.queue import queued, read_notification
from mercure.core.task import read_task
from mercure.router.simulate import IncomingWriter
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

ROUTE_ALL = """
rules:
  everything: {rule: "True", targets: archive}
"""


def test_router_acts_on_notifications_not_on_its_rescan(tmp_path: Path) -> None:
    """With the rescan ten minutes away, new series are routed after their quiet time."""
    config, data = service_config(tmp_path, ROUTE_ALL)
    writer = IncomingWriter(data.root)
    with RouterProcess(config, data):
        sent = [generate_series(tmp_path / f"s{n}", "tiny", 3, seed=n) for n in range(3)]
        for series in sent:
            writer.send(series)
        wait_until(lambda: len(data.entries(Stage.OUTGOING)) == 3, timeout=15)
    routed = {read_task(path).info.uid: dicom_names(path) for path in data.entries(Stage.OUTGOING)}
    assert routed == {series.series_uid: sop_files(series) for series in sent}


def test_first_sigterm_stops_the_router_cleanly(tmp_path: Path) -> None:
    """SIGTERM: the router exits 0 and leaves nothing half-done."""
    config, data = service_config(tmp_path, ROUTE_ALL)
    router = RouterProcess(config, data).start()
    try:
        IncomingWriter(data.root).send(generate_series(tmp_path / "s", "tiny", 3))
        wait_until(lambda: data.entries(Stage.OUTGOING), timeout=15)
        assert router.stop() == 0
    finally:
        router.kill()
    assert list((data.stage(Stage.INCOMING) / ".routing").iterdir()) == []


LOAD_RULES = """
router:
  series_complete_trigger: 0.3
  study_complete_trigger: 0.5
  rescan_interval: 600
notifications:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
rules:
  archive_all: {rule: "True", targets: archive, notification_channels: hook}
  mr_segmentation:
    rule: "tags.Modality == 'MR'"
    action: process
    processing_module: seg
    notification_channels: hook
  drop_other: {rule: "tags.Modality == 'OT'", action: discard}
  us_studies: {rule: "tags.Modality == 'US'", targets: pacs, action_trigger: study}
"""
MODALITIES = ("CT", "MR", "OT", "US", "CT")


def expected_tasks(series: GeneratedSeries) -> Counter[tuple[str, str, str]]:
    """(stage, action, uid) of the tasks one series must end up in, once each."""
    if series.modality == "OT":
        return Counter([("discard", "discard", series.series_uid)])
    expected = Counter([("outgoing", "route", series.series_uid)])
    if series.modality == "MR":
        expected[("processing", "process", series.series_uid)] += 1
    if series.modality == "US":
        expected[("outgoing", "route", series.study_uid)] += 1
    return expected


def settled(data: DataFolder) -> bool:
    """Nothing waits in incoming/ or studies/ and no routing is half-done."""
    incoming = data.stage(Stage.INCOMING)
    waiting = [p for p in incoming.iterdir() if not p.name.startswith(".")]
    routing = list((incoming / ".routing").iterdir())
    return not waiting and not routing and not data.entries(Stage.STUDIES)


@pytest.mark.slow
def test_router_killed_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """50 series arrive while the router is SIGKILLed again and again: every instance ends
    up exactly once in every task it belongs to."""
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    config, data = service_config(tmp_path, LOAD_RULES)
    sent = [
        generate_series(
            tmp_path / f"gen{n}",
            "tiny",
            chance.randint(2, 6),
            seed=1000 + n,
            modality=MODALITIES[n % len(MODALITIES)],
        )
        for n in range(50)
    ]
    router = RouterProcess(config, data)
    sending = threading.Event()
    sending.set()
    kills = 0

    routing = data.stage(Stage.INCOMING) / ".routing"

    def keep_killing() -> None:
        # Every other kill is aimed: right after a series was claimed, in the middle of routing.
        nonlocal kills
        while sending.is_set():
            router.start()
            deadline = time.monotonic() + chance.uniform(0.05, 1.0)
            aimed = kills % 2 == 0
            while time.monotonic() < deadline:
                if aimed and routing.is_dir() and any(routing.iterdir()):
                    time.sleep(chance.uniform(0, 0.004))
                    break
                time.sleep(0.001)
            router.kill()
            kills += 1

    killer = threading.Thread(target=keep_killing)
    killer.start()
    writer = IncomingWriter(data.root)
    try:
        for series in sent:
            writer.send(series)
            time.sleep(chance.uniform(0.02, 0.3))
    finally:
        sending.clear()
        killer.join()
    with router:
        wait_until(lambda: settled(data), timeout=60, message=f"settled (seed {seed})")

    found: Counter[tuple[str, str, str]] = Counter()
    files: dict[tuple[str, str, str], set[str]] = {}
    for stage in Stage:
        for path in data.entries(stage):
            task = read_task(path)
            key = (stage.value, task.info.action, task.info.uid)
            found[key] += 1
            files[key] = dicom_names(path)
            for name in files[key]:
                assert (path / name).stat().st_size > 0
    expected: Counter[tuple[str, str, str]] = Counter()
    for series in sent:
        expected += expected_tasks(series)
    assert found == expected, f"seed {seed}, {kills} kills"
    for series in sent:
        for key in expected_tasks(series):
            assert files[key] == sop_files(series), f"{key}, seed {seed}"
    # Every series task of a rule with a channel has its reception notification queued (a
    # repeat is allowed, a loss is not), and none names another task (the study tasks' rule has
    # no channel: a series-level rule's channel is not told about them).
    reception = Counter(
        n.task_id for n in map(read_notification, queued(data)) if n.trigger == "reception"
    )
    series_tasks = {
        read_task(path).id
        for stage in (Stage.OUTGOING, Stage.PROCESSING)
        for path in data.entries(stage)
        if read_task(path).info.uid_type == "series"
    }
    assert all(reception[task_id] >= 1 for task_id in series_tasks), f"seed {seed}"
    assert set(reception) <= series_tasks, f"seed {seed}"
    assert kills >= 3
