"""The receiver against real senders: files, journal, tags, syntaxes, echo, allow-lists."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from mercure.core.datafolder import Stage
from mercure.core.events import read_segment
from mercure.receiver.handler import MAX_SERIES_IN_EVENT
from mercure.testing.peers import Orthanc, PeerError, StoreSCP, dcmsend, echoscu, storescu
from mercure.testing.receiver import RunningReceiver, dataset_bytes
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.peers


def journal(folder: Path) -> list[dict[str, object]]:
    """The parsed lines of a series journal."""
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


def test_series_from_storescu_lands_byte_identical(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """Each instance is one file in incoming/<series>/, dataset bytes as sent, one journal line."""
    series = generate_series(tmp_path / "in", kind="tiny", count=12, seed=7)
    storescu(receiver.port, series.folder, calling_aet="CT01", called_aet="MERCURE")
    [folder] = receiver.series_folders()
    assert folder.name == series.series_uid
    for instance in series.instances:
        received = folder / f"{instance.sop_instance_uid}.dcm"
        assert dataset_bytes(received) == dataset_bytes(instance.path)
        assert pydicom.dcmread(received).file_meta.SourceApplicationEntityTitle == "CT01"
    # storescu exits once it has the A-RELEASE-RP; the receiver journals the release when the
    # connection is closed, a moment later.
    wait_until(
        lambda: journal(folder)[-1].get("event") == "released",
        timeout=10,
        message="the release journaled",
    )
    lines = journal(folder)
    stored = [line for line in lines if "sop" in line]
    assert sorted(line["sop"] for line in stored) == sorted(series.sop_instance_uids)
    assert {line["calling_aet"] for line in stored} == {"CT01"}
    assert lines[-1]["event"] == "released"
    assert receiver.staging_files() == []


def test_tags_file_has_decoded_tags_and_sender(receiver: RunningReceiver, tmp_path: Path) -> None:
    """tags.json holds the first instance's text elements plus SenderAET/ReceiverAET/Address."""
    series = generate_series(
        tmp_path / "in",
        kind="tiny",
        count=2,
        tags={"SpecificCharacterSet": "ISO_IR 192", "SeriesDescription": "Kopf nativ äöü"},
    )
    storescu(receiver.port, series.folder, calling_aet="MR7", called_aet="MERCURE")
    tags = json.loads((receiver.series_folders()[0] / "tags.json").read_text())
    assert tags["SeriesDescription"] == "Kopf nativ äöü"
    assert tags["SeriesInstanceUID"] == series.series_uid
    assert tags["SenderAET"] == "MR7"
    assert tags["ReceiverAET"] == "MERCURE"
    assert tags["SenderAddress"] == "127.0.0.1"
    assert "PixelData" not in tags


def test_bad_character_set_is_replaced_not_fatal(receiver: RunningReceiver, tmp_path: Path) -> None:
    """An unknown SpecificCharacterSet still gives a tags file and a stored instance."""
    series = generate_series(
        tmp_path / "in",
        kind="tiny",
        count=1,
        tags={"SpecificCharacterSet": "ISO_IR 100", "SeriesDescription": "Kopf \xe4"},
    )
    # pydicom would not write an unknown character set; patch it in, same length.
    raw = series.paths[0].read_bytes()
    series.paths[0].write_bytes(raw.replace(b"ISO_IR 100", b"ISO_IR 999"))
    storescu(receiver.port, series.folder, called_aet="MERCURE")
    tags = json.loads((receiver.series_folders()[0] / "tags.json").read_text())
    assert tags["SeriesInstanceUID"] == series.series_uid
    assert tags["SeriesDescription"].startswith("Kopf ")


@pytest.mark.parametrize(
    ("syntax", "propose"),
    [("implicit", "-xi"), ("explicit", "-xe"), ("big", "-xb"), ("deflated", "-xd"), ("rle", "-xr")],
)
def test_transfer_syntaxes_are_stored_as_sent(
    receiver: RunningReceiver, tmp_path: Path, syntax: str, propose: str | None
) -> None:
    """Implicit, explicit, big endian, deflated and RLE datasets arrive unchanged."""
    series = generate_series(tmp_path / "in", kind="tiny", count=3, transfer_syntax=syntax)
    storescu(receiver.port, series.folder, called_aet="MERCURE", propose=propose)
    for instance in series.instances:
        received = receiver.series_folders()[0] / f"{instance.sop_instance_uid}.dcm"
        assert dataset_bytes(received) == dataset_bytes(instance.path)


@pytest.mark.parametrize("max_pdu", ["4096", "16384", "131072"])
def test_small_and_large_pdus(receiver: RunningReceiver, tmp_path: Path, max_pdu: str) -> None:
    """The series UID is found even when it lies beyond the first PDU of a dataset."""
    series = generate_series(tmp_path / "in", kind="tiny", count=2)
    storescu(receiver.port, series.folder, called_aet="MERCURE", extra_args=["--max-pdu", max_pdu])
    assert len(receiver.instances()) == 2
    assert receiver.series_folders()[0].name == series.series_uid


def test_pydicom_test_files_arrive_as_sent(receiver: RunningReceiver, tmp_path: Path) -> None:
    """Every pydicom test file dcmsend can send is stored exactly as it came over the wire.

    They cover JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE, deflate, big endian,
    odd lengths and private sequences. DCMTK may re-encode a file while sending it, so the
    reference is what a bit-preserving storescp received of the same send.
    """
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files"
    sent = 0
    refused: list[str] = []
    with StoreSCP(tmp_path / "scp", syntaxes="all", bit_preserving=True) as scp:
        for path in sorted(folder.glob("*.dcm")):
            before = stored_files(receiver)
            dcmsend(receiver.port, path, called_aet="MERCURE", check=False)
            # Several test files share a SOP Instance UID: compare each send on its own.
            # A file without SeriesInstanceUID is kept in error/ instead, bytes unchanged too.
            ours = [p for p, inode in stored_files(receiver).items() if before.get(p) != inode]
            dcmsend(scp.port, path, called_aet="STORESCP", check=False)
            theirs = scp.files()
            for reference in theirs[1:]:
                reference.unlink()
            if not theirs:
                continue  # a file DCMTK itself cannot send properly (broken test data)
            if not ours:
                refused.append(path.name)
                theirs[0].unlink()
                continue
            assert dataset_bytes(ours[0]) == dataset_bytes(theirs[0]), path.name
            theirs[0].unlink()
            sent += 1
    # dcmsend sends these on a presentation context whose abstract syntax differs from the
    # command's SOP class (their File Meta contradicts their dataset): we answer 0xA900, as the
    # standard allows; storescp is lenient.
    assert refused == ["rtdose_rle.dcm", "rtdose_rle_1frame.dcm"]
    assert sent >= 55


def stored_files(receiver: RunningReceiver) -> dict[Path, int]:
    """Every instance file the receiver kept (incoming/ and error/), with its inode."""
    data = receiver.data
    paths = [*data.stage(Stage.INCOMING).glob("*/*.dcm"), *data.stage(Stage.ERROR).glob("*/*.dcm")]
    return {path: path.stat().st_ino for path in paths}


def test_echoscu_succeeds(receiver: RunningReceiver) -> None:
    """C-ECHO is answered with success."""
    assert echoscu(receiver.port, called_aet="MERCURE").returncode == 0


def test_calling_aet_not_allowed_is_rejected(receiver_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A sender missing from allowed_calling_aets is rejected at association time."""
    receiver = receiver_factory(listener={"allowed_calling_aets": ["CT01"]})
    series = generate_series(tmp_path / "in", kind="tiny", count=1)
    with pytest.raises(PeerError, match="Calling AE Title Not Recognized"):
        storescu(receiver.port, series.folder, calling_aet="INTRUDER", called_aet="MERCURE")
    storescu(receiver.port, series.folder, calling_aet="CT01", called_aet="MERCURE")
    assert len(receiver.instances()) == 1


def test_wrong_called_aet_is_rejected(receiver: RunningReceiver, tmp_path: Path) -> None:
    """Calling us by another AE title is rejected as called AE not recognised."""
    series = generate_series(tmp_path / "in", kind="tiny", count=1)
    with pytest.raises(PeerError, match="Called AE Title Not Recognized"):
        storescu(receiver.port, series.folder, called_aet="SOMEONE")
    assert receiver.instances() == []


def test_sender_outside_allowed_networks_is_rejected(receiver_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Only addresses in allowed_networks may connect."""
    receiver = receiver_factory(listener={"allowed_networks": ["10.0.0.0/8"]})
    series = generate_series(tmp_path / "in", kind="tiny", count=1)
    with pytest.raises(PeerError, match="Association Rejected"):
        storescu(receiver.port, series.folder, called_aet="MERCURE")
    assert receiver.instances() == []


def test_disk_below_floor_answers_out_of_resources(receiver_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With free space under the floor, C-STORE fails with 0xA700 and nothing is written."""
    receiver = receiver_factory(receiver={"min_free_disk_mb": 1 << 40})
    series = generate_series(tmp_path / "in", kind="tiny", count=2)
    result = storescu(
        receiver.port, series.folder, called_aet="MERCURE", extra_args=["-v"], check=False
    )
    assert "Refused: OutOfResources" in result.stdout + result.stderr
    assert receiver.instances() == [] and receiver.staging_files() == []


def test_resent_instance_replaces_the_earlier_copy(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """Sending a series twice keeps one file per SOP instance."""
    series = generate_series(tmp_path / "in", kind="tiny", count=3)
    storescu(receiver.port, series.folder, called_aet="MERCURE")
    storescu(receiver.port, series.folder, called_aet="MERCURE")
    assert len(receiver.instances()) == 3
    stored = [line for line in journal(receiver.series_folders()[0]) if "sop" in line]
    assert len(stored) == 6 and len({line["sop"] for line in stored}) == 3


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"SeriesInstanceUID": None}, "SeriesInstanceUID is missing"),
        ({"SeriesInstanceUID": "unsafe"}, "is not a safe file name"),
    ],
)
def test_unplaceable_instance_goes_to_error_with_reason(
    receiver: RunningReceiver, tmp_path: Path, tags: dict[str, str | None], reason: str
) -> None:
    """No or unsafe SeriesInstanceUID: failure status, file kept in error/ with error.json."""
    series = generate_series(
        tmp_path / "in",
        kind="tiny",
        count=1,
        tags=tags if tags["SeriesInstanceUID"] is None else {},
    )
    if tags["SeriesInstanceUID"] == "unsafe":
        # pydicom will not write such a UID; patch one in, same length.
        raw = series.paths[0].read_bytes()
        unsafe = (series.series_uid[:-8] + "/../../x").encode()
        series.paths[0].write_bytes(raw.replace(series.series_uid.encode(), unsafe))
    result = storescu(receiver.port, series.folder, called_aet="MERCURE", check=False)
    assert "Cannot understand" in result.stdout + result.stderr or result.returncode != 0
    [task] = receiver.data.entries(Stage.ERROR)
    record = json.loads((task / "error.json").read_text())
    assert reason in record["reason"] and record["fail_stage"] == "receive"
    kept = list(task.glob("*.dcm"))
    assert len(kept) == 1 and dataset_bytes(kept[0]) == dataset_bytes(series.paths[0])
    assert receiver.instances() == []


def test_association_events_go_to_the_outbox(receiver: RunningReceiver, tmp_path: Path) -> None:
    """association.opened/closed and series.first_seen are recorded with counts and bytes."""
    series = generate_series(tmp_path / "in", kind="tiny", count=4)
    storescu(receiver.port, series.folder, calling_aet="CT01", called_aet="MERCURE")
    assert receiver.stop() == 0
    events = [
        event
        for outbox in receiver.data.outbox_dir.iterdir()
        for segment in sorted(outbox.glob("*.jsonl"))
        for event in read_segment(segment)
    ]
    kinds = [event.kind for event in events]
    assert "association.opened" in kinds and "series.first_seen" in kinds
    closed = next(event for event in events if event.kind == "association.closed")
    assert closed.data["instances"] == 4 and closed.data["outcome"] == "released"
    assert closed.data["bytes"] == sum(len(dataset_bytes(p)) for p in series.paths)


def test_mercure_echo_against_receiver_and_storescp(
    receiver: RunningReceiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mercure echo` succeeds against our receiver and DCMTK's storescp; fails clearly else."""
    from mercure.cli import main

    assert main(["echo", "127.0.0.1", str(receiver.port), "MERCURE"]) == 0
    with StoreSCP(tmp_path / "scp") as scp:
        assert main(["echo", "127.0.0.1", str(scp.port), "STORESCP"]) == 0
    assert "success" in capsys.readouterr().out
    assert main(["echo", "127.0.0.1", str(receiver.port), "WRONG"]) == 1
    assert "called AE title not recognised" in capsys.readouterr().out
    from mercure.testing.ports import free_port

    assert main(["echo", "127.0.0.1", str(free_port()), "X", "--timeout", "2"]) == 1
    assert "cannot connect" in capsys.readouterr().out


def test_orthanc_sends_a_series_over_c_store(
    receiver: RunningReceiver, orthanc: Orthanc, tmp_path: Path
) -> None:
    """A real PACS pushing a series: every instance lands as Orthanc stored it."""
    series = generate_series(tmp_path / "in", kind="ct", count=5)
    ids = orthanc.upload(series.paths)
    orthanc.set_modality("mercure", ("MERCURE", "127.0.0.1", receiver.port))
    orthanc.store_to_modality("mercure", ids)
    [folder] = receiver.series_folders()
    assert sorted(p.stem for p in folder.glob("*.dcm")) == sorted(series.sop_instance_uids)
    for instance_id in ids:
        stored = tmp_path / "orthanc.dcm"
        stored.write_bytes(orthanc.instance_file(instance_id))
        uid = pydicom.dcmread(stored, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(folder / f"{uid}.dcm") == dataset_bytes(stored)
    assert journal(folder)[0]["calling_aet"] == "ORTHANC"


def test_listener_change_is_applied_without_restart(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """Adding a listener to the configuration opens it in the running receiver."""
    import yaml

    from mercure.core.config import save_config
    from mercure.testing.ports import free_port
    from mercure.testing.wait import wait_until

    config = yaml.safe_load(receiver.config_path.read_text())
    port = free_port()
    config["receiver"]["listeners"].append({"name": "second", "port": port, "aet": "MERCURE2"})
    save_config(receiver.config_path, yaml.safe_dump(config))
    wait_until(lambda: f"on port {port}" in receiver.log_text(), timeout=15)
    series = generate_series(tmp_path / "in", kind="tiny", count=2)
    storescu(port, series.folder, called_aet="MERCURE2")
    assert len(receiver.instances()) == 2
    assert {
        line["listener"] for line in journal(receiver.series_folders()[0]) if "sop" in line
    } == {"second"}


def test_association_closed_lists_a_bounded_number_of_series(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """An association with more series than the event lists still reports the exact count."""
    count = MAX_SERIES_IN_EVENT + 1
    for number in range(count):
        folder = tmp_path / "in" / f"{number:04d}"
        generate_series(folder, kind="tiny", count=1, series_number=number)
    storescu(receiver.port, tmp_path / "in", called_aet="MERCURE")
    assert len(receiver.series_folders()) == count
    assert receiver.stop() == 0
    [closed] = [
        event
        for outbox in receiver.data.outbox_dir.iterdir()
        for segment in sorted(outbox.glob("*.jsonl"))
        for event in read_segment(segment)
        if event.kind == "association.closed"
    ]
    assert closed.data["series_count"] == count and closed.data["instances"] == count
    assert len(closed.data["series"]) == MAX_SERIES_IN_EVENT
