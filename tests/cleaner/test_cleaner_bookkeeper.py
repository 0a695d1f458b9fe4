"""The bookkeeper learns of every removal: ``mercure clean`` against a real bookkeeper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from cleaner_helpers import make_task, window_around_now

from mercure.core.apikey import key_path
from mercure.core.datafolder import DataFolder, Stage
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.slow


def test_clean_marks_the_task_cleaned_in_the_bookkeeper(
    data: DataFolder, tmp_path: Path, free_port: int
) -> None:
    """After `mercure clean`, the bookkeeper shows the removed task as cleaned."""
    make_task(data, Stage.SUCCESS, "t-cleaned")
    config = tmp_path / "mercure.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(data.root),
                "bookkeeper": {"host": "127.0.0.1", "port": free_port},
                "cleaner": {
                    "success_retention": 0,
                    "disk_threshold_percent": 100,
                    "window": window_around_now(),
                },
            }
        )
    )
    url = f"http://127.0.0.1:{free_port}"

    def healthy() -> bool:
        return httpx.get(f"{url}/health").status_code == 200

    command = [sys.executable, "-m", "mercure", "bookkeeper", "--config", str(config)]
    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as bookkeeper:
        try:
            wait_until(
                lambda: httpx.get(f"{url}/health").status_code == 200, 30, ignore=(httpx.HTTPError,)
            )
            clean = [sys.executable, "-m", "mercure", "clean", "--config", str(config)]
            subprocess.run(clean, check=True, capture_output=True, timeout=30)
            # No api_key is configured: the key is the one the bookkeeper made in data_dir.
            headers = {"Authorization": f"Bearer {key_path(data.root).read_text().strip()}"}
            task = wait_until(
                lambda: (
                    httpx.get(f"{url}/api/v1/tasks/t-cleaned", headers=headers).json().get("task")
                ),
                10,
            )
            assert task["state"] == "cleaned"
        finally:
            bookkeeper.terminate()
            bookkeeper.wait(10)
