"""`mercure requeue` of a finished task (success/ or discard/): a new task, the old one kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from requeue_site import Installation

from mercure.core.claims import Claim
from mercure.core.datafolder import Stage
from mercure.core.task import read_task


@pytest.fixture
def site(tmp_path: Path) -> Installation:
    """An initialised installation with two folder targets."""
    return Installation(tmp_path)


def only_new_task(site: Installation, before: set[str]) -> str:
    """The one task id that appeared in outgoing/."""
    [new] = set(site.tasks_in(Stage.OUTGOING)) - before
    return new


def test_success_task_is_resent_as_a_new_task_with_its_own_files(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new task in outgoing/ (new id, fresh status, own inodes); the old one stays intact."""
    old = site.add(Stage.SUCCESS, "t-old", targets=["pacs"])
    before_old = {p.name: (p.stat().st_ino, p.read_bytes()) for p in old.iterdir()}
    assert site.cli("requeue", "t-old") == 0
    new_id = only_new_task(site, set())
    assert new_id != "t-old"
    out = capsys.readouterr().out
    assert f"t-old: re-sent as task {new_id} in outgoing/ (to pacs); t-old stays in success/" in out
    # The old task is untouched: same files, same inodes, its progress journal kept.
    assert {p.name: (p.stat().st_ino, p.read_bytes()) for p in old.iterdir()} == before_old
    new = site.data.stage(Stage.OUTGOING) / new_id
    assert sorted(p.name for p in new.iterdir()) == sorted(
        [p.name for p in old.glob("*.dcm")] + ["task.json"]
    )
    for path in new.glob("*.dcm"):
        # Copies, not hard links: nothing done to one task's files can reach the other's.
        assert path.stat().st_ino != (old / path.name).stat().st_ino
        assert path.stat().st_nlink == 1
        assert path.read_bytes() == (old / path.name).read_bytes()
    task = read_task(new)
    assert task.id == new_id
    assert task.info.action == "route"
    assert task.info.uid == read_task(old).info.uid
    assert task.dispatch is not None and task.dispatch.target_name == ["pacs"]
    assert task.dispatch.status == {}
    assert task.model_extra is not None and task.model_extra["resent_from"]["task_id"] == "t-old"


def test_resend_links_both_tasks_in_events(site: Installation) -> None:
    """task.created of the new task names its parent; task.resent on the old names the new."""
    site.add(Stage.SUCCESS, "t-old", targets=["pacs"])
    assert site.cli("requeue", "t-old") == 0
    [created] = site.events("task.created")
    [resent] = site.events("task.resent")
    assert created.data["parent_id"] == "t-old"
    assert created.data["stage"] == "outgoing"
    assert created.data["task"]["id"] == created.task_id
    assert "(command line)" in created.data["user"]
    assert resent.task_id == "t-old"
    assert resent.data["new_task_id"] == created.task_id
    assert resent.data["from_stage"] == "success"
    assert "stage" not in resent.data  # the old task's state does not change
    assert created.series_uid == resent.series_uid == site.series.series_uid
    # No patient data in messages (they may be logged and shown above DEBUG).
    assert "Doe" not in created.message + resent.message


def test_targets_can_be_chosen_and_must_exist(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """--target replaces the task's targets; an unknown name is refused with the known ones."""
    site.add(Stage.SUCCESS, "t-old", targets=["pacs"])
    assert site.cli("requeue", "t-old", "--target", "nowhere") == 1
    assert "t-old: not requeued: no target 'nowhere' (targets: archive, pacs)" in (
        capsys.readouterr().out
    )
    assert site.tasks_in(Stage.OUTGOING) == []
    assert site.cli("requeue", "t-old", "--target", "archive", "--target", "pacs") == 0
    new_id = only_new_task(site, set())
    task = read_task(site.data.stage(Stage.OUTGOING) / new_id)
    assert task.dispatch is not None and task.dispatch.target_name == ["archive", "pacs"]


def test_discarded_task_needs_targets(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A discarded task has no targets: requeue says to name them, then sends to those."""
    site.add(Stage.DISCARD, "t-discarded", action="discard", targets=[])
    assert site.cli("requeue", "t-discarded") == 1
    out = capsys.readouterr().out
    assert "t-discarded: not requeued: task t-discarded in discard/ has no targets" in out
    assert "--target NAME" in out
    assert site.cli("requeue", "t-discarded", "--target", "archive") == 0
    new_id = only_new_task(site, set())
    assert read_task(site.data.stage(Stage.OUTGOING) / new_id).info.action == "route"
    assert (site.data.stage(Stage.DISCARD) / "t-discarded").is_dir()


def test_hard_linked_fan_out_is_not_shared_with_the_new_task(site: Installation) -> None:
    """A finished task whose files are hard links of another task's: the copy shares neither."""
    sibling = site.add(Stage.PROCESSING, "t-sibling", action="both")
    old = site.add(Stage.SUCCESS, "t-old", linked_from=sibling)
    assert (old / "IM00001.dcm").stat().st_nlink == 2
    assert site.cli("requeue", "t-old") == 0
    new = site.data.stage(Stage.OUTGOING) / only_new_task(site, set())
    original = (sibling / "IM00001.dcm").read_bytes()
    # A module rewriting its input in place changes both linked tasks, never the new one.
    with open(sibling / "IM00001.dcm", "r+b") as handle:
        handle.write(b"MODIFIED")
    assert (new / "IM00001.dcm").read_bytes() == original
    assert (old / "IM00001.dcm").read_bytes() != original


def test_requeue_refuses_queued_tasks_and_bad_ids(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task still queued has nothing to requeue; ids that are paths are refused outright."""
    site.add(Stage.OUTGOING, "t-queued")
    site.add(Stage.SUCCESS, "t-old")
    assert site.cli("requeue", "t-queued", "../success/t-old", ".hidden", "nope") == 1
    out = capsys.readouterr().out
    assert "t-queued: not requeued: task t-queued is still queued in outgoing/" in out
    assert "../success/t-old: not requeued: not a task id" in out
    assert ".hidden: not requeued: not a task id" in out
    assert "nope: not requeued: no task nope in" in out
    assert site.tasks_in(Stage.OUTGOING) == ["t-queued"]


def test_a_task_being_removed_is_not_resent(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """While another process (the cleaner) holds the task's claim, requeue refuses it."""
    old = site.add(Stage.SUCCESS, "t-old")
    with Claim.take(old):
        assert site.cli("requeue", "t-old") == 1
    assert "t-old: not requeued: task t-old is being worked on by another process" in (
        capsys.readouterr().out
    )
    assert site.tasks_in(Stage.OUTGOING) == []


def test_target_option_is_refused_for_failed_tasks(
    site: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed task goes back to its own targets; --target applies to finished tasks only."""
    folder = site.add(Stage.OUTGOING, "t-failed")
    (folder / "error.json").write_text(json.dumps({"fail_stage": "dispatch", "reason": "x"}))
    task = read_task(folder)
    task.info.fail_stage = "dispatch"
    (folder / "task.json").write_text(task.model_dump_json())
    os.rename(folder, site.data.stage(Stage.ERROR) / "t-failed")
    assert site.cli("requeue", "t-failed", "--target", "archive") == 1
    assert "--target is for re-sending tasks from success/ or discard/" in (capsys.readouterr().out)
    assert site.tasks_in(Stage.ERROR) == ["t-failed"]


def test_an_interrupted_resend_leaves_nothing_visible_and_is_swept(site: Installation) -> None:
    """A half-built new task is a hidden folder; the next requeue removes it (if unclaimed)."""
    site.add(Stage.SUCCESS, "t-old")
    outgoing = site.data.stage(Stage.OUTGOING)
    crashed = outgoing / ".resend-20260101T000000000000Z-deadbeef"
    crashed.mkdir()
    (crashed / "IM00001.dcm").write_bytes(b"half")
    busy = outgoing / ".resend-20260101T000000000001Z-cafecafe"
    busy.mkdir()
    with Claim.take(busy):
        assert site.cli("requeue", "t-old") == 0
        assert not crashed.exists()
        assert busy.exists()  # another requeue is building it right now
    assert len(site.tasks_in(Stage.OUTGOING)) == 1
