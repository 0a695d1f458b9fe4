"""A series in an unknown character set goes through the pipeline with one warning, not one
per element and instance from every service that reads it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mercure.testing.installation import MercureProcess, write_config
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]

INSTANCES = 3


def test_unknown_character_set_is_warned_about_once_per_series(tmp_path: Path) -> None:
    """SpecificCharacterSet 'ISO_IR 999' on every instance: delivered, and logged once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom writes the unknown character set, warning
        series = generate_series(
            tmp_path / "in",
            kind="tiny",
            count=INSTANCES,
            tags={"SpecificCharacterSet": "ISO_IR 999", "SeriesDescription": "charset"},
        )
    receiver_port = free_port()
    delivered = tmp_path / "delivered"
    config = write_config(
        tmp_path,
        receiver_port=receiver_port,
        bookkeeper_port=free_port(),
        targets={"out": {"type": "folder", "folder": str(delivered)}},
        rules={"all": {"rule": "True", "action": "route", "targets": ["out"]}},
    )
    with MercureProcess("run", config, listen_port=receiver_port) as mercure:
        storescu(receiver_port, series.folder, calling_aet="CT01", called_aet="MERCURE")
        wait_until(
            lambda: len(list(delivered.glob("*/*.dcm"))) == INSTANCES,
            timeout=60,
            message="the series delivered to the folder target",
        )
        assert mercure.shutdown() == 0, mercure.log_text()
    log = mercure.log_path.read_text()
    lines = [line for line in log.splitlines() if "ISO_IR 999" in line]
    assert len(lines) == 1, "\n".join(lines)
    assert "WARNING" in lines[0] and series.series_uid in lines[0]
