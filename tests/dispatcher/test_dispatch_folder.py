"""The folder target, and the engine's bookkeeping seen through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dispatch_site import Site

from mercure.core.datafolder import Stage
from mercure.dispatcher.engine import task_files
from mercure.dispatcher.progress import PROGRESS_FILE
from mercure.testing.series import generate_series


def test_task_is_linked_into_folder_with_complete_marker(site: Site, tmp_path: Path) -> None:
    """Every instance lands in <folder>/<task_id>/ (hard-linked), then .complete appears."""
    series = generate_series(tmp_path / "series", "tiny", 5)
    site.configure({"archive": {"type": "folder", "folder": str(tmp_path / "archive")}})
    task_id = site.add_task(series.paths, ["archive"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    delivered = tmp_path / "archive" / task_id
    assert sorted(p.name for p in delivered.glob("*.dcm")) == sorted(p.name for p in series.paths)
    assert (delivered / ".complete").read_text() == "5\n"
    assert (delivered / series.paths[0].name).stat().st_nlink > 1
    status = site.task_json(task_id)["dispatch"]["status"]["archive"]
    assert status["state"] == "complete"
    assert status["instances_sent"] == 5
    assert status["bytes_sent"] == series.total_bytes


def test_two_targets_of_one_task_both_receive_it(site: Site, tmp_path: Path) -> None:
    """A task with two targets is complete only when both have every instance."""
    series = generate_series(tmp_path / "series", "tiny", 3)
    site.configure(
        {
            "a": {"type": "folder", "folder": str(tmp_path / "a")},
            "b": {"type": "folder", "folder": str(tmp_path / "b")},
        }
    )
    task_id = site.add_task(series.paths, ["a", "b"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    for name in ("a", "b"):
        assert len(list((tmp_path / name / task_id).glob("*.dcm"))) == 3
    kinds = [(e["kind"], e["target"]) for e in site.events()]
    assert kinds.count(("dispatch.begin", "a")) == 1
    assert ("dispatch.complete", "b") in kinds
    complete = next(e for e in site.events() if e["kind"] == "dispatch.complete")
    assert complete["instances"] == 3
    assert complete["bytes"] == series.total_bytes


def test_unwritable_folder_ends_in_error_after_retries(site: Site, tmp_path: Path) -> None:
    """A target that keeps failing is tried retry_attempts times, then the task is in error/."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the target folder should be")
    site.configure({"archive": {"type": "folder", "folder": str(blocker)}}, retry_attempts=3)
    task_id = site.add_task(series.paths, ["archive"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    task = site.task_json(task_id)
    assert task["info"]["fail_stage"] == "dispatch"
    assert str(blocker) in task["info"]["reason"]
    assert task["dispatch"]["status"]["archive"]["retries"] == 3
    error = json.loads((site.data.stage(Stage.ERROR) / task_id / "error.json").read_text())
    assert error["fail_stage"] == "dispatch"
    failed = [e for e in site.events() if e["kind"] == "dispatch.failed"]
    assert [e["final"] for e in failed] == [False, False, True]


def test_unknown_target_fails_without_retries(site: Site, tmp_path: Path) -> None:
    """A target name missing from the configuration is a permanent error, named in the reason."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    site.configure({})
    task_id = site.add_task(series.paths, ["nowhere"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    assert "'nowhere' is not in the configuration" in site.task_json(task_id)["info"]["reason"]


def test_retry_sends_only_unconfirmed_instances(site: Site, tmp_path: Path) -> None:
    """Instances confirmed in the progress journal by an earlier attempt are not sent again."""
    series = generate_series(tmp_path / "series", "tiny", 4)
    site.configure({"archive": {"type": "folder", "folder": str(tmp_path / "archive")}})
    task_id = site.add_task(series.paths, ["archive"])
    task_dir = site.data.stage(Stage.OUTGOING) / task_id
    first, second = sorted(p.name for p in series.paths)[:2]
    journal = "".join(
        json.dumps({"target": "archive", "file": name, "bytes": 10}) + "\n"
        for name in (first, second)
    )
    (task_dir / PROGRESS_FILE).write_text(journal + '{"target": "archive", "fi')  # torn line
    site.run_until_finished(task_id)
    delivered = {p.name for p in (tmp_path / "archive" / task_id).glob("*.dcm")}
    assert delivered == {p.name for p in series.paths} - {first, second}
    assert site.task_json(task_id)["dispatch"]["status"]["archive"]["instances_sent"] == 4


def test_paused_queue_sends_nothing_until_resumed(site: Site, tmp_path: Path) -> None:
    """While outgoing is paused no task starts; after resume it is delivered."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    site.configure({"archive": {"type": "folder", "folder": str(tmp_path / "archive")}})
    site.data.pause(Stage.OUTGOING)
    task_id = site.add_task(series.paths, ["archive"])
    polls = []

    def resumed_after_a_while() -> bool:
        polls.append(site.where(task_id))
        if len(polls) == 20:
            site.data.resume(Stage.OUTGOING)
        return site.where(task_id) == Stage.SUCCESS

    site.dispatch_until(resumed_after_a_while)
    assert polls[:20] == [Stage.OUTGOING] * 20


def test_urgent_task_goes_before_normal_and_offpeak_waits(site: Site, tmp_path: Path) -> None:
    """With one slot the urgent task is sent first; offpeak outside the window is not sent."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    site.extra = {"offpeak": {"start": "00:00", "end": "00:01"}}
    site.configure(
        {"archive": {"type": "folder", "folder": str(tmp_path / "archive")}},
        max_parallel_tasks=1,
    )
    normal = site.add_task(series.paths, ["archive"])
    offpeak = site.add_task(series.paths, ["archive"], priority="offpeak")
    urgent = site.add_task(series.paths, ["archive"], priority="urgent")
    site.run_until_finished(normal, urgent)
    order = [e["task_id"] for e in site.events() if e["kind"] == "dispatch.begin"]
    assert order == [urgent, normal]
    assert site.where(offpeak) == Stage.OUTGOING


def test_task_left_complete_in_outgoing_is_moved_on(site: Site, tmp_path: Path) -> None:
    """A task whose targets are all complete (killed before the move) goes to success/."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    site.configure({"archive": {"type": "folder", "folder": str(tmp_path / "archive")}})
    task_id = site.add_task(series.paths, ["archive"])
    task_dir = site.data.stage(Stage.OUTGOING) / task_id
    document = json.loads((task_dir / "task.json").read_text())
    document["dispatch"]["status"] = {"archive": {"state": "complete", "instances_sent": 1}}
    (task_dir / "task.json").write_text(json.dumps(document))
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    assert not (tmp_path / "archive").exists()


@pytest.mark.parametrize("limit", [1, 3])
def test_per_target_limit_bounds_tasks_sent_at_once(site: Site, tmp_path: Path, limit: int) -> None:
    """With a target limit of 1, one task's send ends before the next begins; with 3, they
    overlap."""
    series = generate_series(tmp_path / "series", "tiny", 20)
    folder = {"type": "folder", "folder": str(tmp_path / "archive"), "max_parallel_tasks": limit}
    site.configure({"archive": folder}, max_parallel_tasks=3)
    task_ids = [site.add_task(series.paths, ["archive"]) for _ in range(3)]
    site.run_until_finished(*task_ids)
    kinds = [e["kind"] for e in site.events() if e["kind"] != "dispatch.failed"]
    alternating = ["dispatch.begin", "dispatch.complete"] * 3
    assert (kinds == alternating) is (limit == 1)


def test_task_files_are_the_visible_dcm_files_in_name_order(tmp_path: Path) -> None:
    """Only visible regular .dcm files count (not temporary dot-names, other files or a folder
    named like an instance), in name order."""
    for name in ("2.dcm", "10.dcm", "1.dcm", ".1.5.dcm.tmp", ".hidden.dcm", "task.json"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "3.dcm").mkdir()
    assert [p.name for p in task_files(tmp_path)] == ["1.dcm", "10.dcm", "2.dcm"]
    assert all(p.parent == tmp_path for p in task_files(tmp_path))
