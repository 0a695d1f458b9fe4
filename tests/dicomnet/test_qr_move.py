"""C-MOVE as SCU with our own upper layer, against Orthanc as the PACS and a real receiver,
and against a scripted PACS for what Orthanc does not send (an identifier in the response)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from mercure.dicomnet import Association, AssociationError, dimse
from mercure.dicomnet.pdu import (
    A_RELEASE_RQ,
    PC_ACCEPTANCE,
    PDU_HEADER,
    AssociateAccept,
    PresentationContextResult,
    decode_associate_rq,
    encode_associate_ac,
    encode_pdata,
    encode_release_rp,
)
from mercure.dicomnet.retrieve import RetrieveResult, encode_identifier, move_contexts
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


class _ScriptedPacs:
    """Answers one C-MOVE with two pending responses and a final 'completed with failures'
    (0xB000) whose identifier lists the failed instances: what a standard PACS sends."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._answer(reader, writer)
        finally:
            writer.close()
            self.closed.set()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, length = PDU_HEADER.unpack(await reader.readexactly(6))
        request = decode_associate_rq(await reader.readexactly(length))
        context = request.contexts[0]
        syntax = context.transfer_syntaxes[0]
        result = PresentationContextResult(context.context_id, PC_ACCEPTANCE, syntax)
        writer.write(
            encode_associate_ac(AssociateAccept(request.called_aet, request.calling_aet, [result]))
        )
        message_id, last = 0, False
        while not last:  # the C-MOVE-RQ: command, then identifier, up to its last fragment
            _, length = PDU_HEADER.unpack(await reader.readexactly(6))
            body = await reader.readexactly(length)
            if body[5] & 0x01:
                message_id = (
                    dimse.command_int(dimse.decode_command(body[6:]), dimse.MESSAGE_ID) or 0
                )
            last = bool(body[5] & 0x02) and not body[5] & 0x01

        def response(status: int, remaining: int, completed: int, failed: int) -> bytes:
            elements = [
                (dimse.AFFECTED_SOP_CLASS_UID, dimse.uid_value(context.abstract_syntax)),
                (dimse.COMMAND_FIELD, dimse.C_MOVE_RSP.to_bytes(2, "little")),
                (dimse.MESSAGE_ID_BEING_RESPONDED_TO, message_id.to_bytes(2, "little")),
                (dimse.COMMAND_DATA_SET_TYPE, (0x0101, 0)[status == 0xB000].to_bytes(2, "little")),
                (dimse.STATUS, status.to_bytes(2, "little")),
                (dimse.REMAINING_SUBOPERATIONS, remaining.to_bytes(2, "little")),
                (dimse.COMPLETED_SUBOPERATIONS, completed.to_bytes(2, "little")),
                (dimse.FAILED_SUBOPERATIONS, failed.to_bytes(2, "little")),
                (dimse.WARNING_SUBOPERATIONS, (0).to_bytes(2, "little")),
            ]
            return encode_pdata(
                context.context_id, dimse.encode_command(elements), command=True, max_pdu=0
            )

        writer.write(response(dimse.PENDING, 3, 1, 0))
        writer.write(response(dimse.PENDING, 2, 1, 1))
        writer.write(response(0xB000, 0, 2, 2))
        failed = Dataset()
        failed.FailedSOPInstanceUIDList = ["1.2.3.4", "1.2.3.5"]
        data = encode_identifier(failed, syntax)
        writer.write(encode_pdata(context.context_id, data, command=False, max_pdu=0))
        pdu_type, length = PDU_HEADER.unpack(await reader.readexactly(6))
        await reader.readexactly(length)
        if pdu_type == A_RELEASE_RQ:
            writer.write(encode_release_rp())
        await reader.read()


def test_final_response_identifier_lists_the_failed_instances() -> None:
    """Pending counts reach the progress callback; the final identifier's failed list, the
    counts and the 0xB000 status make a result that is not ok."""
    pacs = _ScriptedPacs()
    progress: list[tuple[int, ...]] = []

    async def run() -> RetrieveResult:
        server = await asyncio.start_server(pacs.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with await Association.connect(
                "127.0.0.1", port, called_aet="SCRIPTED", contexts=move_contexts(), dimse_timeout=5
            ) as assoc:
                return await assoc.move(
                    study_identifier("1.2.3"), "MERCURE", progress=lambda *c: progress.append(c)
                )
        finally:
            server.close()
            await asyncio.wait_for(pacs.closed.wait(), 10)
            await server.wait_closed()

    result = asyncio.run(run())
    assert progress == [(3, 1, 0, 0), (2, 1, 1, 0)]
    assert (result.status, result.completed, result.failed) == (0xB000, 2, 2)
    assert result.failed_sop_instances == ("1.2.3.4", "1.2.3.5")
    assert not result.ok
