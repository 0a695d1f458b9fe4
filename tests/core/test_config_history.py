"""Saving the configuration: atomic, validated, with previous versions kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercure.core.config import list_versions, restore_version, save_config
from mercure.core.errors import ConfigError


def test_save_keeps_previous_versions_and_restores_one(tmp_path: Path) -> None:
    """Each save archives the file it replaces; an old version can be made current again."""
    path = tmp_path / "mercure.yaml"
    path.write_text("router: {series_complete_trigger: 10}\n")
    save_config(path, "router: {series_complete_trigger: 20}\n")
    save_config(path, "router: {series_complete_trigger: 30}\n")
    versions = list_versions(path)
    assert [v.read_text() for v in versions] == [
        "router: {series_complete_trigger: 10}\n",
        "router: {series_complete_trigger: 20}\n",
    ]
    loaded = restore_version(path, versions[0])
    assert loaded.config.router.series_complete_trigger == 10
    assert path.read_text() == "router: {series_complete_trigger: 10}\n"
    assert len(list_versions(path)) == 3


def test_invalid_save_changes_nothing(tmp_path: Path) -> None:
    """An invalid document is refused and the file stays as it was."""
    path = tmp_path / "mercure.yaml"
    path.write_text("router: {series_complete_trigger: 10}\n")
    with pytest.raises(ConfigError):
        save_config(path, "router: {series_complete_trigger: never}\n")
    assert path.read_text() == "router: {series_complete_trigger: 10}\n"
    assert list_versions(path) == []


def test_history_is_bounded(tmp_path: Path) -> None:
    """Only the newest `keep` versions are kept."""
    path = tmp_path / "mercure.yaml"
    path.write_text("{}\n")
    for n in range(5):
        save_config(path, f"router: {{series_complete_trigger: {n}}}\n", keep=3)
    assert len(list_versions(path)) == 3
