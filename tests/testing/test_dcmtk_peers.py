"""Tests of the DCMTK peers: storescp receives what storescu, dcmsend and echoscu send."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mercure.testing.peers import PeerError, StoreSCP, dcmsend, echoscu, is_listening, storescu
from mercure.testing.ports import free_port
from mercure.testing.series import GeneratedSeries

pytestmark = pytest.mark.peers


def _data_set(part10: bytes) -> bytes:
    """The bytes after the File Meta group (which the receiver writes itself)."""
    # Preamble (128) + "DICM" (4), then (0002,0000) UL: tag 4, VR 2, length 2, value at 140.
    group_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + group_length :]


def test_storescp_receives_what_storescu_sends(
    storescp: Callable[..., StoreSCP], ct_series: GeneratedSeries
) -> None:
    """Every instance of a CT series sent by storescu arrives complete at storescp."""
    scp = storescp()
    result = storescu(scp.port, ct_series.folder, called_aet=scp.ae_title)
    assert result.returncode == 0
    assert len(scp.wait_for_files(len(ct_series))) == len(ct_series)
    assert scp.sop_instance_uids() == ct_series.sop_instance_uids


def test_bit_preserving_storescp_keeps_the_sent_bytes(
    storescp: Callable[..., StoreSCP], tiny_series: GeneratedSeries
) -> None:
    """With bit preserving mode the received data set equals the sent one byte for byte."""
    scp = storescp(bit_preserving=True)
    storescu(scp.port, tiny_series.paths[0])
    (received,) = scp.wait_for_files(1)
    assert _data_set(received.read_bytes()) == _data_set(tiny_series.paths[0].read_bytes())


def test_forking_storescp_receives_parallel_associations(
    storescp: Callable[..., StoreSCP], make_series: Callable[..., GeneratedSeries]
) -> None:
    """storescp --fork serves two senders and stopping it ends its children too."""
    first, second = make_series(count=5, seed=11), make_series(count=5, seed=12)
    scp = storescp(fork=True)
    storescu(scp.port, first.folder)
    dcmsend(scp.port, second.folder)
    scp.wait_for_files(10)
    assert scp.sop_instance_uids() == first.sop_instance_uids | second.sop_instance_uids
    scp.stop()
    assert not is_listening(scp.port)


def test_implicit_only_storescp_gets_decompressed_data_from_dcmsend(
    storescp: Callable[..., StoreSCP], make_series: Callable[..., GeneratedSeries], tmp_path: Path
) -> None:
    """A receiver that accepts only implicit VR refuses RLE from storescu; dcmsend converts it."""
    rle = make_series(count=2, transfer_syntax="rle")
    scp = storescp(syntaxes="implicit-only")
    assert storescu(scp.port, rle.folder, check=False).returncode != 0
    report = tmp_path / "report.txt"
    dcmsend(scp.port, rle.folder, report_file=report)
    assert len(scp.wait_for_files(2)) == 2
    assert "with status SUCCESS  : 2" in report.read_text()


def test_echoscu_succeeds_against_storescp(storescp: Callable[..., StoreSCP]) -> None:
    """A C-ECHO to a running storescp succeeds."""
    scp = storescp(ae_title="ECHOTARGET")
    assert echoscu(scp.port, called_aet="ECHOTARGET").returncode == 0


def test_client_failure_raises_peer_error_with_output() -> None:
    """A sender that cannot connect raises PeerError carrying DCMTK's message."""
    with pytest.raises(PeerError, match="Connection refused"):
        echoscu(free_port())


def test_storescp_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    """A storescp that exits at start-up raises PeerError with the command's log."""
    scp = StoreSCP(tmp_path / "out", extra_args=["--no-such-option"])
    with pytest.raises(PeerError, match=r"exited with code .* during start-up") as failure:
        scp.start()
    assert "no-such-option" in str(failure.value)
    assert not scp.running
