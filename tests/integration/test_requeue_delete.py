"""Re-sending a delivered task and deleting a queued one, with the real services running: the
copy reaches its target, and the bookkeeper links both tasks and records the deletion."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mercure.cli import main
from mercure.core.datafolder import DataFolder, Stage
from mercure.testing.installation import BookkeeperClient, MercureProcess, write_config
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]


@dataclass
class Site:
    """Running bookkeeper, receiver, router and dispatcher, and how to reach them."""

    root: Path
    config: Path
    data: DataFolder
    receiver_port: int
    api: BookkeeperClient

    def cli(self, *argv: str) -> int:
        """``mercure ARGV --config <config>`` in this process."""
        return main([*argv, "--config", str(self.config)])


def task_in_state(api: BookkeeperClient, task_id: str, state: str) -> dict[str, Any] | None:
    """The bookkeeper's record of the task once it is in ``state`` (None before)."""
    try:
        record: dict[str, Any] = api.task(task_id)["task"]
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return record if record["state"] == state else None


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The services as separate processes; two folder targets, CT routed to `pacs`."""
    receiver_port, bookkeeper_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=bookkeeper_port,
        targets={
            "pacs": {"type": "folder", "folder": str(tmp_path / "pacs")},
            "research": {"type": "folder", "folder": str(tmp_path / "research")},
        },
        rules={"ct": {"rule": "tags.Modality == 'CT'", "action": "route", "targets": ["pacs"]}},
    )
    api = BookkeeperClient(bookkeeper_port)
    with contextlib.ExitStack() as stack:
        stack.callback(api.close)
        stack.enter_context(
            MercureProcess(
                "bookkeeper",
                config,
                listen_port=bookkeeper_port,
                health_url=f"http://127.0.0.1:{bookkeeper_port}/health",
            )
        )
        for service in (
            MercureProcess("receiver", config, listen_port=receiver_port),
            MercureProcess("router", config),
            MercureProcess("dispatcher", config),
        ):
            stack.enter_context(service)
        yield Site(tmp_path, config, DataFolder(tmp_path / "data"), receiver_port, api)


def test_resend_and_delete_with_the_services_running(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """Delivered -> re-sent elsewhere (delivered too, linked) -> re-sent, deleted while queued."""
    series = generate_series(site.root / "series", "ct", 3, size=(16, 16))
    storescu(site.receiver_port, series.folder, called_aet="MERCURE")
    [old] = wait_until(lambda: site.data.entries(Stage.SUCCESS), timeout=60)
    assert len(list((site.root / "pacs" / old.name).glob("*.dcm"))) == 3

    # Re-send the delivered task to another target: a new task that the dispatcher delivers.
    capsys.readouterr()
    assert site.cli("requeue", old.name, "--target", "research") == 0
    new_id = capsys.readouterr().out.split("re-sent as task ")[1].split()[0]
    delivered = site.root / "research" / new_id
    wait_until(lambda: (delivered / ".complete").exists(), timeout=60)
    names = sorted(p.name for p in old.glob("*.dcm"))
    assert len(names) == 3
    assert sorted(p.name for p in delivered.glob("*.dcm")) == names
    wait_until(lambda: (site.data.stage(Stage.SUCCESS) / new_id).is_dir(), timeout=30)
    assert old.is_dir()

    task = wait_until(lambda: task_in_state(site.api, new_id, "success"), timeout=30)
    assert task["parent_id"] == old.name
    old_timeline = site.api.timeline(old.name)
    resent = [e for e in old_timeline if e["kind"] == "task.resent"]
    assert [e["data"]["new_task_id"] for e in resent] == [new_id]
    assert site.api.task(old.name)["task"]["state"] == "success"

    # Re-send again while outgoing/ is paused, and delete the queued copy.
    assert site.cli("pause", "outgoing") == 0
    capsys.readouterr()
    assert site.cli("requeue", old.name) == 0
    queued = capsys.readouterr().out.split("re-sent as task ")[1].split()[0]
    assert (site.data.stage(Stage.OUTGOING) / queued).is_dir()
    assert site.cli("delete", queued, "--yes", "--reason", "not needed") == 0
    assert not (site.data.stage(Stage.OUTGOING) / queued).exists()
    assert site.cli("resume", "outgoing") == 0

    wait_until(lambda: task_in_state(site.api, queued, "deleted"), timeout=30)
    [event] = [e for e in site.api.timeline(queued) if e["kind"] == "task.deleted"]
    assert event["data"]["from_stage"] == "outgoing"
    assert event["data"]["reason"] == "not needed"
    assert "(command line)" in event["data"]["user"]
    assert [t["task_id"] for t in site.api.tasks(state="deleted")] == [queued]
    assert not (site.root / "pacs" / queued).exists()
