"""Fixtures of the notifier's tests: a data folder, an HTTP recorder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from notifier_helpers import Recorder, http_recorder

from mercure.core.datafolder import DataFolder


@pytest.fixture
def data(tmp_path: Path) -> DataFolder:
    """An empty data folder."""
    folder = DataFolder(tmp_path / "data")
    folder.ensure()
    return folder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A running HTTP recorder."""
    with http_recorder() as running:
        yield running
