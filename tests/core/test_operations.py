"""The operator's actions (core.operations): what each does to the data folder, which event
names the user, and what each refuses (a task a live process holds, the wrong stage)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_claims import holder_process

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import ClaimError, TaskError
from mercure.core.events import Event, EventClient, Outbox, read_segment
from mercure.core.operations import (
    complete_study,
    delete_task,
    discard_task,
    pause_stage,
    requeue,
    resume_stage,
    studies_of,
)
from mercure.core.task import (
    ERROR_FILE,
    TargetStatus,
    Task,
    TaskDispatch,
    TaskInfo,
    TaskStudy,
    read_task,
    write_task,
)

USER = "olga (web interface)"


class Site:
    """A data folder and an outbox to read the events back."""

    def __init__(self, root: Path) -> None:
        self.data = DataFolder(root / "data")
        self.data.ensure()
        self.outbox = Outbox(self.data.outbox_dir, "test@here")
        self.events = EventClient(self.outbox, "test", "here")

    def task(
        self, stage: Stage, task_id: str, *, fail_stage: str | None = None, files: int = 2
    ) -> Path:
        """A task with DICOM-named files and one target; failed in ``fail_stage`` if given."""
        folder = self.data.stage(stage) / task_id
        folder.mkdir()
        for n in range(files):
            (folder / f"1.2.{n}.dcm").write_bytes(b"DICM" * 10)
        task = Task(
            id=task_id,
            info=TaskInfo(action="route", uid="1.2.840.1", fail_stage=fail_stage),
            dispatch=TaskDispatch(
                target_name=["pacs"],
                status={"pacs": TargetStatus(state="error" if fail_stage else "waiting")},
            ),
        )
        write_task(folder, task)
        if fail_stage:
            (folder / ERROR_FILE).write_text(f'{{"fail_stage": "{fail_stage}"}}')
        return folder

    def written(self, kind: str) -> list[Event]:
        """Events of ``kind`` written so far."""
        self.outbox.seal()
        return [
            event
            for path in sorted(self.outbox.folder.glob("*.jsonl"))
            for event in read_segment(path)
            if event.kind == kind
        ]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A fresh data folder."""
    made = Site(tmp_path)
    yield made
    made.outbox.close()


@pytest.mark.parametrize("stage", [Stage.ERROR, Stage.OUTGOING, Stage.PROCESSING])
def test_discard_moves_the_task_with_its_reason_and_names_the_user(
    site: Site, stage: Stage
) -> None:
    """discard/ gets the task, task.json the reason, task.discarded the user and the reason."""
    site.task(stage, "t-1", fail_stage="dispatch" if stage is Stage.ERROR else None)
    line = discard_task(site.data, "t-1", site.events, user=USER, reason="duplicate study")
    assert line == f"t-1: discarded from {stage.value}/"
    assert not (site.data.stage(stage) / "t-1").exists()
    task = read_task(site.data.stage(Stage.DISCARD) / "t-1")
    assert task.info.reason == f"discarded by {USER}: duplicate study"
    [event] = site.written("task.discarded")
    assert event.task_id == "t-1"
    assert event.data["user"] == USER
    assert event.data["reason"] == "duplicate study"
    assert event.data["stage"] == "discard"
    assert event.data["from_stage"] == stage.value


def test_discard_refuses_a_task_a_live_process_holds(site: Site) -> None:
    """A dispatcher sending it holds its claim: refused with what to do, nothing moves."""
    folder = site.task(Stage.OUTGOING, "t-busy")
    with holder_process(folder), pytest.raises(ClaimError, match="mercure pause outgoing"):
        discard_task(site.data, "t-busy", site.events, user=USER, reason="x")
    assert folder.is_dir()
    assert site.written("task.discarded") == []


def test_discard_needs_a_reason_and_a_discardable_stage(site: Site) -> None:
    """No reason, or a task in success/: refused with the reason why."""
    site.task(Stage.ERROR, "t-1", fail_stage="dispatch")
    with pytest.raises(TaskError, match="say why"):
        discard_task(site.data, "t-1", site.events, user=USER, reason="  ")
    site.task(Stage.SUCCESS, "t-done")
    with pytest.raises(TaskError, match="no task t-done in error/, processing/, outgoing/"):
        discard_task(site.data, "t-done", site.events, user=USER, reason="x")


def test_requeue_records_the_user(site: Site) -> None:
    """A dispatch failure goes back to outgoing/; task.requeued names who did it."""
    site.task(Stage.ERROR, "t-1", fail_stage="dispatch")
    assert requeue(site.data, "t-1", site.events, user=USER) == "t-1: back in outgoing/"
    task = read_task(site.data.stage(Stage.OUTGOING) / "t-1")
    assert task.dispatch is not None and task.dispatch.status["pacs"].state == "waiting"
    [event] = site.written("task.requeued")
    assert event.data["user"] == USER
    assert USER in event.message


def test_requeue_refuses_a_claimed_failed_task(site: Site) -> None:
    """Another operator (or the cleaner) holding the failed task: refused, it stays."""
    folder = site.task(Stage.ERROR, "t-1", fail_stage="dispatch")
    with holder_process(folder), pytest.raises(ClaimError, match="being worked on"):
        requeue(site.data, "t-1", site.events, user=USER)
    assert folder.is_dir()


def test_delete_of_a_started_processing_task_needs_the_processor_release(site: Site) -> None:
    """Without the processor's release a task a processor started is refused, with the
    command that can do it; a queued one that no processor touched is deleted."""
    started = site.task(Stage.PROCESSING, "t-started")
    (started / ".processor").mkdir()
    with pytest.raises(TaskError, match="mercure delete t-started"):
        delete_task(site.data, "t-started", site.events, user=USER)
    assert started.is_dir()
    site.task(Stage.PROCESSING, "t-queued")
    line = delete_task(site.data, "t-queued", site.events, user=USER, reason="test")
    assert line == "t-queued: deleted from processing/"
    [event] = site.written("task.deleted")
    assert event.data["user"] == USER and event.data["reason"] == "test"
    released: list[Path] = []
    delete_task(
        site.data,
        "t-started",
        site.events,
        user=USER,
        release=lambda folder: released.append(folder) or ["module stopped"],
    )
    assert [p.name for p in released] == ["t-started"]
    assert not started.exists()


def make_study(site: Site, study_uid: str, rule: str) -> Path:
    """A study being collected for ``rule`` (one series)."""
    folder = site.data.stage(Stage.STUDIES) / f"{study_uid}#{rule}"
    folder.mkdir()
    (folder / "1.2.3.dcm").write_bytes(b"DICM")
    task = Task(
        id=f"study-{rule}",
        info=TaskInfo(action="route", uid=study_uid, uid_type="study", applied_rule=rule),
        dispatch=TaskDispatch(target_name=["pacs"]),
        study=TaskStudy(study_uid=study_uid, received_series=["T1"], received_series_uid=["1"]),
    )
    write_task(folder, task)
    return folder


@pytest.mark.parametrize("discard", [False, True])
def test_complete_study_moves_it_on_and_names_the_user(site: Site, discard: bool) -> None:
    """Forced complete goes to the action's stage; with discard to discard/; the event says
    who did it."""
    make_study(site, "1.2.9", "collect")
    make_study(site, "1.2.9", "other")
    assert studies_of(site.data, "1.2.9") == ["1.2.9#collect", "1.2.9#other"]
    assert studies_of(site.data, "1.2.9", "other") == ["1.2.9#other"]
    line = complete_study(site.data, "1.2.9#collect", site.events, user=USER, discard=discard)
    stage = Stage.DISCARD if discard else Stage.OUTGOING
    assert line == f"1.2.9#collect: task study-collect moved to {stage.value}/"
    task = read_task(site.data.stage(stage) / "study-collect")
    assert task.study is not None and task.study.complete_force
    [event] = site.written("task.discarded" if discard else "task.update")
    assert event.data["user"] == USER
    assert event.data["stage"] == stage.value
    assert studies_of(site.data, "1.2.9") == ["1.2.9#other"]


def test_complete_study_refuses_a_busy_or_unknown_study(site: Site) -> None:
    """The router adding a series holds the study: busy; an unknown name: said so."""
    folder = make_study(site, "1.2.9", "collect")
    with holder_process(folder), pytest.raises(ClaimError, match="busy"):
        complete_study(site.data, "1.2.9#collect", site.events, user=USER)
    with pytest.raises(TaskError, match=r"no study 1\.2\.9#nope"):
        complete_study(site.data, "1.2.9#nope", site.events, user=USER)
    with pytest.raises(TaskError, match="not a study"):
        complete_study(site.data, "../outgoing", site.events, user=USER)


def test_pause_and_resume_record_who(site: Site) -> None:
    """The pause file says who paused it; both events name the user; incoming/ cannot be
    paused."""
    assert pause_stage(site.data, "outgoing", site.events, user=USER, reason="PACS down")
    assert site.data.is_paused(Stage.OUTGOING)
    note = (site.data.control_dir / "pause-outgoing").read_text()
    assert note.strip() == f"paused by {USER}: PACS down"
    resume_stage(site.data, Stage.OUTGOING, site.events, user=USER)
    assert not site.data.is_paused(Stage.OUTGOING)
    [paused] = site.written("queue.paused")
    [resumed] = site.written("queue.resumed")
    assert paused.data["user"] == resumed.data["user"] == USER
    with pytest.raises(TaskError, match="cannot be paused"):
        pause_stage(site.data, "incoming", site.events, user=USER)
