"""Fixtures of the processor tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processor.harness import Processor


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[Processor]:
    """An unstarted processor harness; stopped at the end of the test."""
    harness = Processor(tmp_path)
    yield harness
    harness.stop()
