"""The receiver runs on uvloop (a dependency): less CPU per instance than asyncio's own loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercure.testing.peers import storescu
from mercure.testing.receiver import RunningReceiver
from mercure.testing.series import generate_series

pytestmark = pytest.mark.peers


def test_receiver_process_serves_on_uvloop(receiver: RunningReceiver, tmp_path: Path) -> None:
    assert receiver.process is not None
    maps = Path(f"/proc/{receiver.process.pid}/maps").read_text()
    assert "uvloop" in maps
    series = generate_series(tmp_path / "in", kind="tiny", count=3)
    storescu(receiver.port, series.folder, called_aet="MERCURE")
    assert len(receiver.instances()) == 3
