"""C-MOVE as SCU with our own upper layer, against Orthanc as the PACS and a real receiver."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from mercure.dicomnet import Association, AssociationError, dimse
from mercure.dicomnet.retrieve import RetrieveResult, move_contexts
from mercure.testing.peers import Orthanc
from mercure.testing.ports import free_port
from mercure.testing.receiver import RunningReceiver, receiver_config, start_receiver
from mercure.testing.series import GeneratedStudy, SeriesSpec, generate_study

pytestmark = pytest.mark.peers

OUR_AET = "MERCURE_SCU"


def study_identifier(study_uid: str) -> Dataset:
    """A Study Root identifier selecting one study."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


async def move(
    orthanc: Orthanc, identifier: Dataset, destination: str, progress: list[tuple[int, ...]]
) -> RetrieveResult:
    """One C-MOVE on its own association."""
    async with await Association.connect(
        "127.0.0.1",
        orthanc.dicom_port,
        called_aet=orthanc.aet,
        calling_aet=OUR_AET,
        contexts=move_contexts(),
    ) as assoc:
        return await assoc.move(
            identifier, destination, progress=lambda *counts: progress.append(counts)
        )


@pytest.fixture
def study(tmp_path: Path) -> GeneratedStudy:
    """Two small series of one study."""
    return generate_study(tmp_path / "study", (SeriesSpec("tiny", 4), SeriesSpec("tiny", 3)))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[RunningReceiver]:
    """A real `mercure receiver` (AE title MERCURE), killed afterwards."""
    running = start_receiver(receiver_config(tmp_path / "data"), tmp_path / "mercure.yaml")
    yield running
    running.stop(signal.SIGKILL)


@pytest.fixture
def pacs(orthanc: Orthanc, study: GeneratedStudy, receiver: RunningReceiver) -> Orthanc:
    """Orthanc holding the study, knowing us (the requestor) and the receiver."""
    orthanc.upload(study.paths)
    orthanc.set_modality("scu", (OUR_AET, "127.0.0.1", free_port()))
    orthanc.set_modality("mercure", (receiver.aet, "127.0.0.1", receiver.port))
    return orthanc


def test_move_study_lands_every_instance_at_the_receiver(
    pacs: Orthanc, study: GeneratedStudy, receiver: RunningReceiver
) -> None:
    """A Study Root C-MOVE to our receiver: every instance arrives, counts and progress match."""
    progress: list[tuple[int, ...]] = []
    result = asyncio.run(move(pacs, study_identifier(study.study_uid), receiver.aet, progress))
    total = len(study.sop_instance_uids)
    assert result.ok, result
    assert (result.completed, result.failed, result.warning) == (total, 0, 0)
    assert {path.stem for path in receiver.instances()} == study.sop_instance_uids
    assert progress, "no pending response reached the progress callback"
    assert progress[-1][0] + progress[-1][1] == total


def test_move_of_one_series_moves_only_that_series(
    pacs: Orthanc, study: GeneratedStudy, receiver: RunningReceiver
) -> None:
    """A SERIES-level identifier moves that series and nothing else."""
    series = study.series[1]
    identifier = study_identifier(study.study_uid)
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.SeriesInstanceUID = series.series_uid
    result = asyncio.run(move(pacs, identifier, receiver.aet, []))
    assert result.ok and result.completed == len(series)
    assert {path.stem for path in receiver.instances()} == series.sop_instance_uids


def test_move_to_unknown_destination_is_a_failure_status(
    pacs: Orthanc, study: GeneratedStudy, receiver: RunningReceiver
) -> None:
    """Orthanc refuses a destination it does not know: a failure result, nothing sent."""
    result = asyncio.run(move(pacs, study_identifier(study.study_uid), "NOBODY", []))
    assert not result.ok
    assert not dimse.is_success(result.status) and result.status not in (
        dimse.PENDING,
        dimse.PENDING_WITH_WARNINGS,
    )
    assert result.completed == 0
    assert receiver.instances() == []


def test_move_from_a_pacs_that_is_not_running_raises_a_clear_error() -> None:
    """Nobody listening: AssociationError naming the peer, not a hang or a bare OSError."""
    port = free_port()

    async def attempt() -> None:
        async with await Association.connect(
            "127.0.0.1", port, called_aet="ORTHANC", contexts=move_contexts(), connect_timeout=5
        ) as assoc:
            await assoc.move(study_identifier("1.2.3"), "MERCURE")

    with pytest.raises(AssociationError, match=f"cannot connect to ORTHANC@127.0.0.1:{port}"):
        asyncio.run(attempt())
