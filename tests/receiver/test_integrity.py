"""What the receiver acknowledges is what it keeps: truncated or malformed datasets, and datasets
whose SOP Class / Instance UID differ from the C-STORE request's, are refused over a real
association and kept in error/ with the reason."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from mercure.core.datafolder import Stage
from mercure.dicomnet.requestor import Association, ContextProposal
from mercure.dicomnet.uids import EXPLICIT_VR_LITTLE_ENDIAN
from mercure.testing.receiver import RunningReceiver, dataset_bytes
from mercure.testing.series import generate_series

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def send_raw(receiver: RunningReceiver, dataset: bytes, sop_class: str, sop_instance: str) -> int:
    """Send ``dataset`` bytes as they are, under this command, over a real association; the
    status of the C-STORE-RSP."""

    async def run() -> int:
        association = await Association.connect(
            "127.0.0.1",
            receiver.port,
            called_aet=receiver.aet,
            calling_aet="RAWSENDER",
            contexts=[ContextProposal(sop_class, (EXPLICIT_VR_LITTLE_ENDIAN,))],
            max_pdu=16384,
        )
        async with association:
            response = await association.store_dataset(
                sop_class, sop_instance, EXPLICIT_VR_LITTLE_ENDIAN, dataset
            )
        return response.status

    return asyncio.run(run())


def kept_in_error(receiver: RunningReceiver) -> tuple[dict[str, object], bytes]:
    """The one rejected instance: its error.json and the dataset bytes kept."""
    [task] = receiver.data.entries(Stage.ERROR)
    record = json.loads((task / "error.json").read_text())
    [kept] = task.glob("*.dcm")
    return record, dataset_bytes(kept)


@pytest.fixture
def instance(tmp_path: Path) -> tuple[pydicom.Dataset, bytes]:
    """A generated CT instance and its dataset bytes (Explicit VR Little Endian)."""
    path = generate_series(tmp_path / "in", kind="tiny", count=1, seed=5).paths[0]
    return pydicom.dcmread(path), dataset_bytes(path)


def test_pixel_data_longer_than_sent_is_refused_and_kept_in_error(
    receiver: RunningReceiver, instance: tuple[pydicom.Dataset, bytes]
) -> None:
    """PixelData declaring 0xFFFFFFF0 bytes with 100 sent: 0xC000, bytes in error/ with why."""
    ds, data = instance
    cut = data[: data.index(b"\xe0\x7f\x10\x00")]
    truncated = cut + b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<I", 0xFFFFFFF0) + bytes(100)
    assert send_raw(receiver, truncated, ds.SOPClassUID, ds.SOPInstanceUID) == 0xC000
    record, kept = kept_in_error(receiver)
    assert record["fail_stage"] == "receive"
    assert "malformed dataset: dataset ends inside element (7FE0,0010)" in str(record["reason"])
    assert kept == truncated and receiver.instances() == []


def test_dataset_cut_short_is_refused(
    receiver: RunningReceiver, instance: tuple[pydicom.Dataset, bytes]
) -> None:
    """A dataset simply cut short in its pixel data is refused, not forwarded."""
    ds, data = instance
    assert send_raw(receiver, data[:-100], ds.SOPClassUID, ds.SOPInstanceUID) == 0xC000
    record, _ = kept_in_error(receiver)
    assert "100 bytes of its declared length are missing" in str(record["reason"])
    assert receiver.instances() == []


def test_unclosed_sequence_is_refused(
    receiver: RunningReceiver, instance: tuple[pydicom.Dataset, bytes]
) -> None:
    """An undefined-length sequence that never closes is refused."""
    ds, data = instance
    unclosed = (
        data
        + b"\x09\x00\x10\x10SQ\0\0\xff\xff\xff\xff"
        + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        + b"\x08\x00\x60\x00CS\x02\x00CT"
    )
    assert send_raw(receiver, unclosed, ds.SOPClassUID, ds.SOPInstanceUID) == 0xC000
    record, _ = kept_in_error(receiver)
    assert "never closed" in str(record["reason"])


@pytest.mark.parametrize(
    ("command_class", "dataset_instance", "reason"),
    [
        (None, "1.2.3.999", "SOPInstanceUID of the dataset '1.2.3.999' differs"),
        (None, "../../x", "SOPInstanceUID of the dataset '../../x' differs"),
        (MR_IMAGE, None, "SOPClassUID of the dataset '1.2.840.10008.5.1.4.1.1.2' differs"),
    ],
)
def test_uids_differing_from_the_command_are_refused(
    receiver: RunningReceiver,
    instance: tuple[pydicom.Dataset, bytes],
    tmp_path: Path,
    command_class: str | None,
    dataset_instance: str | None,
    reason: str,
) -> None:
    """SOP Instance or Class UID of the dataset not the request's: 0xA900, kept in error/."""
    ds, _ = instance
    if dataset_instance is not None:
        # pydicom will not write an unsafe UID: patch it in after writing.
        command_instance = ds.SOPInstanceUID
        ds.SOPInstanceUID = "9" * len(dataset_instance)
    else:
        command_instance = ds.SOPInstanceUID
    path = tmp_path / "changed.dcm"
    ds.save_as(path)
    data = dataset_bytes(path)
    if dataset_instance is not None:
        data = data.replace(("9" * len(dataset_instance)).encode(), dataset_instance.encode())
    status = send_raw(receiver, data, command_class or ds.SOPClassUID, command_instance)
    assert status == 0xA900
    record, kept = kept_in_error(receiver)
    assert reason in str(record["reason"]) and kept == data
    assert receiver.instances() == []


def test_dataset_without_sop_instance_uid_cannot_be_understood(
    receiver: RunningReceiver, instance: tuple[pydicom.Dataset, bytes], tmp_path: Path
) -> None:
    """No SOPInstanceUID in the dataset: 0xC000, as DCMTK's storescp answers."""
    ds, _ = instance
    command_instance = ds.SOPInstanceUID
    del ds.SOPInstanceUID
    path = tmp_path / "no-uid.dcm"
    ds.save_as(path)
    data = dataset_bytes(path)
    assert send_raw(receiver, data, ds.SOPClassUID, command_instance) == 0xC000
    record, _ = kept_in_error(receiver)
    assert record["reason"] == "SOPInstanceUID is missing from the dataset"


def test_the_python_scanner_can_be_chosen_and_refuses_the_same(
    receiver_factory: Callable[..., RunningReceiver],
    instance: tuple[pydicom.Dataset, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MERCURE_SCANNER=python: the receiver says so once, stores a well-formed instance and
    refuses a truncated one with the same reason as the compiled scanner gives."""
    monkeypatch.setenv("MERCURE_SCANNER", "python")
    receiver = receiver_factory()
    ds, data = instance
    assert receiver.log_text().count("MERCURE_SCANNER=python is set") == 1
    assert send_raw(receiver, data, ds.SOPClassUID, ds.SOPInstanceUID) == 0x0000
    assert send_raw(receiver, data[:-100], ds.SOPClassUID, "1.2.3.4.5") == 0xC000
    record, _ = kept_in_error(receiver)
    assert "(7FE0,0010): 100 bytes of its declared length are missing" in str(record["reason"])
    assert len(receiver.instances()) == 1


def test_the_compiled_scanner_runs_by_default(receiver: RunningReceiver) -> None:
    """Without the switch the receiver does not warn about the scanner."""
    assert "dataset scanner" not in receiver.log_text()
