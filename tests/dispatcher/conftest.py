"""Fixtures of the dispatcher tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dispatch_site import Site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A fresh data folder and configuration file."""
    return Site(tmp_path)
