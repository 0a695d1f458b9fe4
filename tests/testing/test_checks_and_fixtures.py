"""Tests of mercure.testing.checks and of the plugin's generator fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mercure.testing.checks import assert_no_partial_files, dicom_files, sop_instance_uids_in
from mercure.testing.fixtures import SeriesCache
from mercure.testing.series import GeneratedSeries


def test_complete_files_pass(make_series: Callable[..., GeneratedSeries]) -> None:
    """A generated series passes and the number of files checked is returned."""
    series = make_series(count=3)
    assert assert_no_partial_files(series.folder) == 3
    assert sop_instance_uids_in(series.folder) == series.sop_instance_uids


def test_truncated_file_fails(make_series: Callable[..., GeneratedSeries]) -> None:
    """A file cut short in its pixel data is reported with its path."""
    series = make_series(count=2)
    victim = series.paths[1]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(AssertionError, match=r"IM00002\.dcm: pixel data"):
        assert_no_partial_files(series.folder)


def test_temporary_leftover_fails(tmp_path: Path) -> None:
    """A leftover temporary name counts as a partial file."""
    (tmp_path / ".tmp-x.dcm.1.ab").write_bytes(b"half")
    with pytest.raises(AssertionError, match="temporary files left"):
        assert_no_partial_files(tmp_path)
    assert dicom_files(tmp_path) == []


def test_series_cache_generates_once(series_cache: SeriesCache) -> None:
    """Asking twice for the same series returns the same files without regenerating."""
    first = series_cache.get("tiny", 2, seed=99)
    mtime = first.paths[0].stat().st_mtime_ns
    assert series_cache.get("tiny", 2, seed=99) is first
    assert first.paths[0].stat().st_mtime_ns == mtime
    assert series_cache.get("tiny", 2, seed=98) is not first


def test_session_series_have_their_kinds(
    ct_series: GeneratedSeries, mr_series: GeneratedSeries, tiny_series: GeneratedSeries
) -> None:
    """The shared series fixtures are the CT, MR and tiny kinds with distinct studies."""
    assert [(s.kind, len(s)) for s in (ct_series, mr_series, tiny_series)] == [
        ("ct", 10),
        ("mr", 10),
        ("tiny", 20),
    ]
    assert len({s.study_uid for s in (ct_series, mr_series, tiny_series)}) == 3


def test_free_port_fixture_gives_distinct_ports(free_port: int) -> None:
    """The fixture hands out a port number in the TCP range."""
    assert 1024 < free_port < 65536
