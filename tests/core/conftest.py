"""Fixtures shared by the tests of the shared core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import EventClient, Outbox
from mercure.core.ingest.placement import Placer
from mercure.core.ingest.staging import Staging


@pytest.fixture
def data_and_placer(tmp_path: Path) -> Iterator[tuple[DataFolder, Placer]]:
    """A data folder and the receiver's placer on it (fsync on), closed after the test."""
    data = DataFolder(tmp_path / "data")
    data.ensure()
    placer = Placer(
        data,
        Staging(data.stage(Stage.INCOMING), "test"),
        EventClient(Outbox(tmp_path / "outbox", "receiver"), "receiver"),
        fsync=True,
    )
    yield data, placer
    placer.flusher.close()
    placer.staging.close()
