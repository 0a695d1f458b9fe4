"""C-GET as SCU with our own upper layer, against Orthanc: instances streamed into sinks, also
through the receiver's own write path (Placer), and cleaned up when the PACS dies midway."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import EventClient, Outbox
from mercure.core.ingest.placement import JOURNAL, TAGS, AssociationState, Placer
from mercure.core.ingest.staging import Staging
from mercure.dicomnet import (
    OUT_OF_RESOURCES,
    SUCCESS,
    Association,
    AssociationAborted,
    AssociationError,
    StoreContext,
    StoreRefused,
    StoreSink,
    dimse,
    get_contexts,
)
from mercure.dicomnet.filemeta import read_file_meta_from
from mercure.dicomnet.pdu import (
    PC_ACCEPTANCE,
    PDU_HEADER,
    AssociateAccept,
    PresentationContextResult,
    RoleSelection,
    decode_associate_rq,
    encode_associate_ac,
    encode_pdata,
    pdata_header,
)
from mercure.dicomnet.retrieve import RetrieveResult
from mercure.testing.peers import Orthanc
from mercure.testing.ports import free_port
from mercure.testing.series import (
    CT_IMAGE_STORAGE,
    GeneratedStudy,
    SeriesSpec,
    generate_series,
    generate_study,
)

pytestmark = pytest.mark.peers

OUR_AET = "MERCURE_SCU"


def study_identifier(study_uid: str) -> Dataset:
    """A Study Root identifier selecting one study."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def known_to(orthanc: Orthanc) -> Orthanc:
    """Orthanc answers C-GET only to AE titles in its DicomModalities."""
    orthanc.set_modality("scu", (OUR_AET, "127.0.0.1", free_port()))
    return orthanc


async def get(
    orthanc: Orthanc, study_uid: str, open_store: Callable[[StoreContext], StoreSink]
) -> RetrieveResult:
    """One C-GET of a study on its own association."""
    contexts, roles = get_contexts()
    async with await Association.connect(
        "127.0.0.1",
        orthanc.dicom_port,
        called_aet=orthanc.aet,
        calling_aet=OUR_AET,
        contexts=contexts,
        roles=roles,
    ) as assoc:
        return await assoc.get(study_identifier(study_uid), open_store=open_store)


@dataclass
class FolderSinks:
    """Sinks that keep each dataset as ``<folder>/<SOPInstanceUID>`` (refusing some UIDs)."""

    folder: Path
    refuse: set[str] = field(default_factory=set)
    contexts: list[StoreContext] = field(default_factory=list)

    def __call__(self, context: StoreContext) -> StoreSink:
        self.contexts.append(context)
        if context.sop_instance_uid in self.refuse:
            raise StoreRefused(OUT_OF_RESOURCES, "refused by the test")
        return _FileSink(self.folder / context.sop_instance_uid)


class _FileSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("wb")

    def write(self, chunk: memoryview) -> None:
        self.file.write(chunk)

    def finish(self) -> int:
        self.file.close()
        return SUCCESS

    def abort(self) -> None:
        self.file.close()
        self.path.unlink()


def stored_datasets(orthanc: Orthanc) -> dict[str, bytes]:
    """SOP Instance UID -> dataset bytes (after the File Meta) of what Orthanc holds."""
    datasets = {}
    for instance_id in orthanc.instances():
        data = orthanc.instance_file(instance_id)
        meta = read_file_meta_from(io.BytesIO(data), instance_id)
        datasets[meta.sop_instance_uid] = data[meta.dataset_offset :]
    return datasets


@pytest.fixture
def study(tmp_path: Path) -> GeneratedStudy:
    """Three series of one study: two in Explicit VR LE, one in Implicit VR LE."""
    return generate_study(
        tmp_path / "study",
        (
            SeriesSpec("tiny", 4),
            SeriesSpec("tiny", 3, transfer_syntax="implicit"),
            SeriesSpec("mr", 2),
        ),
    )


def test_get_study_of_three_series_arrives_byte_identical(
    orthanc: Orthanc, study: GeneratedStudy, tmp_path: Path
) -> None:
    """Every instance arrives once, in its stored transfer syntax, bytes as Orthanc holds."""
    known_to(orthanc).upload(study.paths)
    sinks = FolderSinks(tmp_path / "got")
    sinks.folder.mkdir()
    result = asyncio.run(get(orthanc, study.study_uid, sinks))
    total = len(study.sop_instance_uids)
    assert result.ok, result
    assert (result.completed, result.failed, result.warning) == (total, 0, 0)
    expected = stored_datasets(orthanc)
    assert {p.name for p in sinks.folder.iterdir()} == set(expected) == study.sop_instance_uids
    for uid, data in expected.items():
        assert (sinks.folder / uid).read_bytes() == data, f"{uid} differs from Orthanc's copy"
    syntaxes = {c.transfer_syntax_uid for c in sinks.contexts}
    assert syntaxes == {s.transfer_syntax for s in study.series}
    assert {c.calling_aet for c in sinks.contexts} == {orthanc.aet}


@dataclass
class PlacerUnderTest:
    """A Placer built as the receiver service builds it, on a fresh data folder."""

    data: DataFolder
    placer: Placer
    state: AssociationState

    def open_store(self, context: StoreContext) -> StoreSink:
        return self.placer.open_sink(self.state, context)

    def close(self) -> None:
        self.placer.release(self.state, released=True)
        self.placer.flusher.close()
        self.placer.staging.close()

    def staged(self) -> list[Path]:
        return sorted(self.data.stage(Stage.INCOMING).glob(".receiving/*/*"))


@pytest.fixture
def placed(tmp_path: Path) -> Iterator[PlacerUnderTest]:
    """A Placer on ``tmp_path/data`` with fsync on."""
    data = DataFolder(tmp_path / "data")
    data.ensure()
    staging = Staging(data.stage(Stage.INCOMING), "retrieve-test")
    events = EventClient(Outbox(data.outbox_dir, "retriever"), "retriever", "test")
    placer = Placer(data, staging, events, fsync=True)
    state = AssociationState(
        key="retrieve-test-1",
        listener="retrieve",
        calling_aet="ORTHANC",
        called_aet=OUR_AET,
        address="127.0.0.1",
    )
    under_test = PlacerUnderTest(data, placer, state)
    yield under_test
    under_test.close()


def test_get_through_the_placer_lands_series_folders_in_incoming(
    orthanc: Orthanc, study: GeneratedStudy, placed: PlacerUnderTest
) -> None:
    """The receiver's write path: incoming/<series>/<sop>.dcm, a journal line each, tags."""
    known_to(orthanc).upload(study.paths)
    result = asyncio.run(get(orthanc, study.study_uid, placed.open_store))
    assert result.ok and result.completed == len(study.sop_instance_uids)
    incoming = placed.data.stage(Stage.INCOMING)
    expected = stored_datasets(orthanc)
    for series in study.series:
        folder = incoming / series.series_uid
        assert {p.stem for p in folder.glob("*.dcm")} == series.sop_instance_uids
        for path in folder.glob("*.dcm"):
            data = path.read_bytes()
            meta = read_file_meta_from(io.BytesIO(data), str(path))
            assert meta.transfer_syntax_uid == series.transfer_syntax
            assert data[meta.dataset_offset :] == expected[path.stem]
        journal = [json.loads(line) for line in (folder / JOURNAL).read_text().splitlines()]
        assert {line["sop"] for line in journal if "sop" in line} == series.sop_instance_uids
        tags = json.loads((folder / TAGS).read_text())
        assert tags["SeriesInstanceUID"] == series.series_uid
        assert tags["SenderAET"] == "ORTHANC"
    assert placed.staged() == []


def test_get_of_a_study_the_pacs_does_not_have_retrieves_nothing(
    orthanc: Orthanc, tmp_path: Path
) -> None:
    """No match: the PACS's final status, no instance, no failure counted."""
    known_to(orthanc)
    sinks = FolderSinks(tmp_path)
    result = asyncio.run(get(orthanc, "1.2.826.0.1.3680043.8.498.1", sinks))
    assert (result.completed, result.failed, result.warning) == (0, 0, 0)
    assert sinks.contexts == []


def test_a_refused_instance_fails_alone_and_the_get_goes_on(
    orthanc: Orthanc, study: GeneratedStudy, tmp_path: Path
) -> None:
    """A sink refusing one instance: that one counted failed (and listed), the rest stored."""
    known_to(orthanc).upload(study.paths)
    refused = sorted(study.series[0].sop_instance_uids)[1]
    sinks = FolderSinks(tmp_path / "got", refuse={refused})
    sinks.folder.mkdir()
    result = asyncio.run(get(orthanc, study.study_uid, sinks))
    assert not result.ok
    assert (result.completed, result.failed) == (len(study.sop_instance_uids) - 1, 1)
    if result.failed_sop_instances:  # optional in the final response (PS3.4 C.4.3.1.3.1)
        assert result.failed_sop_instances == (refused,)
    stored = {p.name for p in sinks.folder.iterdir()}
    assert stored == study.sop_instance_uids - {refused}


class _KillingSinks:
    """Opens Placer sinks; on the first bytes of instance number ``at`` it kills Orthanc."""

    def __init__(self, placed: PlacerUnderTest, orthanc: Orthanc, at: int) -> None:
        self.placed = placed
        self.orthanc = orthanc
        self.at = at
        self.opened = 0

    def __call__(self, context: StoreContext) -> StoreSink:
        self.opened += 1
        sink = self.placed.open_store(context)
        return _KillOnFirstWrite(sink, self.orthanc) if self.opened == self.at else sink


class _KillOnFirstWrite:
    def __init__(self, inner: StoreSink, orthanc: Orthanc) -> None:
        self.inner = inner
        self.orthanc = orthanc

    def write(self, chunk: memoryview) -> None:
        if self.orthanc.running:
            self.orthanc.crash()
        self.inner.write(chunk)

    def finish(self) -> int | Awaitable[int]:
        return self.inner.finish()

    def abort(self) -> None:
        self.inner.abort()


@pytest.mark.slow
def test_pacs_killed_mid_get_leaves_no_partial_file(
    orthanc_factory: Callable[..., Orthanc], placed: PlacerUnderTest, tmp_path: Path
) -> None:
    """Orthanc killed while sending: the call raises, incoming/ holds only whole instances."""
    orthanc = known_to(orthanc_factory())
    series = generate_series(tmp_path / "ct", "ct", 6)
    orthanc.upload(series.paths)
    sinks = _KillingSinks(placed, orthanc, at=3)
    with pytest.raises(AssociationError):
        asyncio.run(get(orthanc, series.study_uid, sinks))
    assert sinks.opened >= 3
    originals = {i.sop_instance_uid: i.path.read_bytes() for i in series.instances}
    landed = sorted(placed.data.stage(Stage.INCOMING).glob("*/*.dcm"))
    assert len(landed) < len(series)
    for path in landed:
        data = path.read_bytes()
        meta = read_file_meta_from(io.BytesIO(data), str(path))
        original = originals[path.stem]
        original_meta = read_file_meta_from(io.BytesIO(original), path.stem)
        assert data[meta.dataset_offset :] == original[original_meta.dataset_offset :]
    assert placed.staged() == []


def test_cancel_stops_the_get_with_the_counts_so_far(
    orthanc: Orthanc, study: GeneratedStudy, tmp_path: Path
) -> None:
    """C-CANCEL after the second instance: the PACS ends the C-GET early, status Cancel."""
    known_to(orthanc).upload(study.paths)
    sinks = FolderSinks(tmp_path / "got")
    sinks.folder.mkdir()

    async def run() -> RetrieveResult:
        contexts, roles = get_contexts()
        async with await Association.connect(
            "127.0.0.1",
            orthanc.dicom_port,
            called_aet=orthanc.aet,
            calling_aet=OUR_AET,
            contexts=contexts,
            roles=roles,
        ) as assoc:

            def open_store(context: StoreContext) -> StoreSink:
                if len(sinks.contexts) == 1:
                    assoc.cancel()
                return sinks(context)

            return await assoc.get(study_identifier(study.study_uid), open_store=open_store)

    result = asyncio.run(run())
    total = len(study.sop_instance_uids)
    assert result.status == dimse.CANCEL, result
    assert not result.ok
    assert 1 <= result.completed < total
    # The instance in flight when the cancel arrived may be stored here yet not counted.
    assert result.completed <= len(list(sinks.folder.iterdir())) <= result.completed + 1


class _SilentPacs:
    """Accepts an association, then (``send_part``) starts one C-STORE sub-operation with
    half a dataset, and falls silent: a PACS that hangs."""

    def __init__(self, *, send_part: bool) -> None:
        self.send_part = send_part
        self.closed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._hang(reader, writer)
        finally:
            writer.close()
            self.closed.set()

    async def _hang(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, length = PDU_HEADER.unpack(await reader.readexactly(6))
        request = decode_associate_rq(await reader.readexactly(length))
        results = [
            PresentationContextResult(c.context_id, PC_ACCEPTANCE, c.transfer_syntaxes[0])
            for c in request.contexts
        ]
        roles = [RoleSelection(r.sop_class_uid, False, True) for r in request.role_selections]
        writer.write(
            encode_associate_ac(
                AssociateAccept(
                    request.called_aet, request.calling_aet, results, 16384, role_selections=roles
                )
            )
        )
        if self.send_part:
            await reader.readexactly(6)  # the C-GET-RQ's first PDU header: it has arrived
            storage = next(c for c in request.contexts if c.abstract_syntax == CT_IMAGE_STORAGE)
            command = dimse.encode_c_store_rq(CT_IMAGE_STORAGE, "1.2.3.4", 1)
            writer.write(encode_pdata(storage.context_id, command, command=True, max_pdu=0))
            writer.write(
                pdata_header(storage.context_id, 1000, command=False, last=False) + bytes(1000)
            )
        await reader.read()  # until the requestor goes


@pytest.mark.parametrize("send_part", [False, True], ids=["no-response", "mid-instance"])
def test_a_silent_pacs_times_out_and_aborts_the_unfinished_instance(
    send_part: bool, tmp_path: Path
) -> None:
    """DIMSE timeout during a C-GET: AssociationAborted, the half-received instance aborted."""
    opened: list[_RecordingSink] = []

    def open_store(context: StoreContext) -> StoreSink:
        opened.append(_RecordingSink())
        return opened[-1]

    async def run() -> None:
        pacs = _SilentPacs(send_part=send_part)
        server = await asyncio.start_server(pacs.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        contexts, roles = get_contexts()
        try:
            async with await Association.connect(
                "127.0.0.1",
                port,
                called_aet="SILENT",
                contexts=contexts,
                roles=roles,
                dimse_timeout=0.5,
            ) as assoc:
                await assoc.get(study_identifier("1.2.3"), open_store=open_store)
        finally:
            server.close()
            await asyncio.wait_for(pacs.closed.wait(), 10)  # it saw our abort and closed
            await server.wait_closed()

    with pytest.raises(AssociationAborted, match=r"sent nothing for 0\.5 s"):
        asyncio.run(run())
    if send_part:
        assert len(opened) == 1 and opened[0].events == ["write", "abort"]
    else:
        assert opened == []


class _RecordingSink:
    def __init__(self) -> None:
        self.events: list[str] = []

    def write(self, chunk: memoryview) -> None:
        if not self.events:
            self.events.append("write")

    def finish(self) -> int:
        self.events.append("finish")
        return SUCCESS

    def abort(self) -> None:
        self.events.append("abort")
