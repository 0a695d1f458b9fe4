"""``mercure test-target`` and requeueing a failed task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dispatch_site import Site

from mercure.cli.main import main
from mercure.core.datafolder import Stage
from mercure.core.errors import TaskError
from mercure.core.requeue import requeue_failed_dispatch as requeue_task
from mercure.testing.peers import StoreSCP
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series


def test_test_target_reports_writable_folder(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writable folder target passes with a message naming the folder."""
    site.configure({"archive": {"type": "folder", "folder": str(tmp_path)}})
    assert main(["test-target", "archive", "--config", str(site.config_path)]) == 0
    assert capsys.readouterr().out == f"archive: OK: folder {tmp_path} is writable\n"


def test_test_target_names_unknown_target(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown name fails and lists the configured targets."""
    site.configure(
        {"b": {"type": "folder", "folder": "/tmp"}, "a": {"type": "folder", "folder": "/"}}
    )
    assert main(["test-target", "c", "--config", str(site.config_path)]) == 1
    assert "no target named 'c' in the configuration (known: a, b)" in capsys.readouterr().err


@pytest.mark.peers
def test_test_target_echoes_dicom_target(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """C-ECHO succeeds against storescp and fails clearly when nothing listens."""
    closed = free_port()
    with StoreSCP(tmp_path / "scp") as scp:
        site.configure(
            {
                "up": {"type": "dicom", "host": "127.0.0.1", "port": scp.port, "aet_target": "X"},
                "down": {"type": "dicom", "host": "127.0.0.1", "port": closed},
            }
        )
        assert main(["test-target", "up", "--config", str(site.config_path)]) == 0
        assert f"C-ECHO to X@127.0.0.1:{scp.port} succeeded" in capsys.readouterr().out
    assert main(["test-target", "down", "--config", str(site.config_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"down: FAILED: cannot connect to ANY-SCP@127.0.0.1:{closed}")


def test_requeued_task_is_delivered_after_the_cause_is_fixed(site: Site, tmp_path: Path) -> None:
    """A task in error/ goes back to outgoing/ with fresh attempts and is then delivered."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    blocker = tmp_path / "archive"
    blocker.write_text("not a folder")
    site.configure({"archive": {"type": "folder", "folder": str(blocker)}}, retry_attempts=1)
    task_id = site.add_task(series.paths, ["archive"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    blocker.unlink()
    requeue_task(site.data, task_id)
    task = site.task_json(task_id)
    assert site.where(task_id) == Stage.OUTGOING
    assert task["info"]["fail_stage"] is None
    assert task["dispatch"]["status"]["archive"]["state"] == "waiting"
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    folder = site.data.stage(Stage.SUCCESS) / task_id
    old_error = json.loads(next(folder.glob("requeued-error-*.json")).read_text())
    assert old_error["fail_stage"] == "dispatch"


def test_requeue_refuses_a_task_that_is_not_in_error(site: Site) -> None:
    """Requeueing an unknown task id says where it looked."""
    with pytest.raises(TaskError, match=r"no task 123 in .*error"):
        requeue_task(site.data, "123")
