"""C-FIND as SCU with our own upper layer: against Orthanc as the PACS, and against pynetdicom
as an independent C-FIND SCP that gives the odd answers a PACS may give."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from mercure.dicomnet import Association, AssociationError, FindFailed, find, find_contexts
from mercure.dicomnet.retrieve import Model
from mercure.testing.peers import Orthanc
from mercure.testing.ports import free_port
from mercure.testing.series import SeriesSpec, generate_study
from mercure.testing.wait import wait_until

OUR_AET = "MERCURE_SCU"

Query = Callable[[Association], Any]


def study_query(**matching: str) -> Dataset:
    """A study-level identifier: the return keys empty, ``matching`` set."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in ("StudyInstanceUID", "AccessionNumber", "StudyDate", "ModalitiesInStudy"):
        setattr(ds, keyword, "")
    ds.NumberOfStudyRelatedInstances = ""
    for keyword, value in matching.items():
        setattr(ds, keyword, value)
    return ds


async def on_association(
    port: int, *queries: Query, called_aet: str = "ORTHANC", model: Model = "study", **kw: Any
) -> list[Any]:
    """Run ``queries`` one after the other on one association; their results (or errors)."""
    results: list[Any] = []
    async with await Association.connect(
        "127.0.0.1",
        port,
        called_aet=called_aet,
        calling_aet=OUR_AET,
        contexts=find_contexts(model),
        **kw,
    ) as assoc:
        for query in queries:
            try:
                results.append(await query(assoc))
            except FindFailed as exc:
                results.append(exc)
    return results


def accessions(matches: list[Dataset]) -> set[str]:
    return {str(m.AccessionNumber) for m in matches}


# --- Orthanc -----------------------------------------------------------------------------------


@pytest.fixture
def pacs(orthanc: Orthanc, tmp_path: Path) -> Orthanc:
    """Orthanc holding four studies (two CT, one MR, one CT+MR), knowing our AE title: it
    answers C-FIND only to the AE titles in its DicomModalities."""
    orthanc.set_modality("scu", (OUR_AET, "127.0.0.1", free_port()))
    plans = [
        ("F1", "20250105", (("CT", 2),)),
        ("F2", "20250120", (("MR", 1),)),
        ("F3", "20250211", (("CT", 1), ("MR", 3))),
        ("F4", "20240601", (("CT", 1),)),
    ]
    for seed, (accession, date, series) in enumerate(plans, start=1):
        study = generate_study(
            tmp_path / accession,
            [
                SeriesSpec("tiny", count, modality=modality, tags={"StudyDate": date})
                for modality, count in series
            ],
            seed=100 + seed,
            accession_number=accession,
        )
        orthanc.upload(study.paths)
    return orthanc


@pytest.mark.peers
def test_orthanc_matches_by_accession_date_range_and_modality(pacs: Orthanc) -> None:
    """Each matching key narrows the studies; a match carries the return keys, decoded."""
    results = asyncio.run(
        on_association(
            pacs.dicom_port,
            lambda a: a.find(study_query(AccessionNumber="F3")),
            lambda a: a.find(study_query(StudyDate="20250101-20250131")),
            lambda a: a.find(study_query(StudyDate="20250201-")),
            lambda a: a.find(study_query(ModalitiesInStudy="MR")),
            lambda a: a.find(study_query()),
        )
    )
    by_accession, january, since_february, with_mr, everything = results
    (match,) = by_accession
    assert match.AccessionNumber == "F3" and match.StudyDate == "20250211"
    assert set(match.ModalitiesInStudy) == {"CT", "MR"}
    assert int(match.NumberOfStudyRelatedInstances) == 4
    assert accessions(january) == {"F1", "F2"}
    assert accessions(since_february) == {"F3"}
    assert accessions(with_mr) == {"F2", "F3"}
    assert accessions(everything) == {"F1", "F2", "F3", "F4"}


@pytest.mark.peers
def test_orthanc_series_level_reports_instance_counts(pacs: Orthanc) -> None:
    """At series level (Study Root), each series of a study comes with its instance count."""
    (study,) = asyncio.run(
        on_association(pacs.dicom_port, lambda a: a.find(study_query(AccessionNumber="F3")))
    )[0]
    series = Dataset()
    series.QueryRetrieveLevel = "SERIES"
    series.StudyInstanceUID = study.StudyInstanceUID
    series.SeriesInstanceUID = ""
    series.Modality = ""
    series.NumberOfSeriesRelatedInstances = ""
    (found,) = asyncio.run(on_association(pacs.dicom_port, lambda a: a.find(series)))
    counts = {str(s.Modality): int(s.NumberOfSeriesRelatedInstances) for s in found}
    assert counts == {"CT": 1, "MR": 3}
    assert {s.StudyInstanceUID for s in found} == {study.StudyInstanceUID}


@pytest.mark.peers
def test_orthanc_patient_root(pacs: Orthanc) -> None:
    """The Patient Root model is proposed and used when asked for."""
    patients = Dataset()
    patients.QueryRetrieveLevel = "PATIENT"
    patients.PatientID = ""
    (found,) = asyncio.run(
        on_association(
            pacs.dicom_port, lambda a: a.find(patients, model="patient"), model="patient"
        )
    )
    assert len(found) == 4  # generate_study makes one patient per seed
    assert all(str(m.PatientID) for m in found)


@pytest.mark.peers
def test_orthanc_past_the_limit_is_cancelled_and_the_association_goes_on(pacs: Orthanc) -> None:
    """A limit below the number of matches gives exactly that many; the C-FIND is followed to
    its final response, so a second query on the same association gets everything."""
    limited, everything = asyncio.run(
        on_association(
            pacs.dicom_port,
            lambda a: a.find(study_query(), limit=2),
            lambda a: a.find(study_query()),
        )
    )
    assert len(limited) == 2
    assert accessions(limited) < accessions(everything) == {"F1", "F2", "F3", "F4"}


@pytest.mark.peers
def test_orthanc_failure_status_is_find_failed_and_the_association_goes_on(
    pacs: Orthanc,
) -> None:
    """A query level Orthanc does not know is answered with a failure status: FindFailed with
    that status; the next query on the association works."""
    bogus = study_query()
    bogus.QueryRetrieveLevel = "NONSENSE"
    failed, after = asyncio.run(
        on_association(
            pacs.dicom_port,
            lambda a: a.find(bogus),
            lambda a: a.find(study_query(AccessionNumber="F1")),
        )
    )
    assert isinstance(failed, FindFailed)
    assert failed.status >= 0xA000 and f"0x{failed.status:04X}" in str(failed)
    assert accessions(after) == {"F1"}


@pytest.mark.peers
def test_orthanc_down_is_an_association_error(orthanc_factory: Callable[..., Orthanc]) -> None:
    """Orthanc killed while we hold an association: the C-FIND raises AssociationError
    (nothing hangs); afterwards a new association cannot be had, which is said too."""
    orthanc = orthanc_factory(modalities={"scu": (OUR_AET, "127.0.0.1", free_port())})

    async def run() -> None:
        async with await Association.connect(
            "127.0.0.1",
            orthanc.dicom_port,
            called_aet=orthanc.aet,
            calling_aet=OUR_AET,
            contexts=find_contexts(),
            dimse_timeout=30,
        ) as assoc:
            orthanc.stop()
            await assoc.find(study_query())

    with pytest.raises(AssociationError, match=f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"):
        asyncio.run(run())
    with pytest.raises(AssociationError, match="cannot connect"):
        asyncio.run(on_association(orthanc.dicom_port, lambda a: a.find(study_query())))


# --- pynetdicom as the C-FIND SCP ----------------------------------------------------------------


@contextmanager
def find_scp(handler: Callable[[evt.Event], Iterator[tuple[Any, Dataset | None]]]) -> Iterator[int]:
    """pynetdicom serving Study and Patient Root C-FIND with ``handler``; its port."""
    ae = AE(ae_title="FINDSCP")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, handler)]
    )
    try:
        yield port
    finally:
        server.shutdown()


def match(number: int, **values: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.AccessionNumber = f"M{number}"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def on_scp(port: int, *queries: Query, **kw: Any) -> list[Any]:
    return asyncio.run(on_association(port, *queries, called_aet="FINDSCP", **kw))


def test_pending_response_without_identifier_is_skipped() -> None:
    """A pending response with no identifier (the standard wants one) is no match; the
    matches around it are kept in order."""

    def handler(event: evt.Event) -> Iterator[tuple[Any, Dataset | None]]:
        yield 0xFF00, match(1)
        # pynetdicom's own loop never sends this: send the bare response by hand.
        bare = C_FIND()
        bare.MessageIDBeingRespondedTo = event.request.MessageID
        bare.AffectedSOPClassUID = event.request.AffectedSOPClassUID
        bare.Status = 0xFF00
        event.assoc.dimse.send_msg(bare, event.context.context_id)
        yield 0xFF00, match(2)

    with find_scp(handler) as port:
        (found,) = on_scp(port, lambda a: a.find(study_query()))
    assert [str(m.AccessionNumber) for m in found] == ["M1", "M2"]


def test_failure_status_carries_the_peers_comment() -> None:
    """A failure after some matches: FindFailed with the status and the peer's comment (the
    matches so far are not returned as if they were all)."""

    def handler(event: evt.Event) -> Iterator[tuple[Any, Dataset | None]]:
        yield 0xFF00, match(1)
        status = Dataset()
        status.Status = 0xA700
        status.ErrorComment = "index offline"
        yield status, None

    with find_scp(handler) as port:
        failed, again = on_scp(port, lambda a: a.find(study_query()), lambda a: a.find(Dataset()))
    assert isinstance(failed, FindFailed)
    assert (failed.status, failed.comment) == (0xA700, "index offline")
    assert "status 0xA700: index offline" in str(failed)
    assert isinstance(again, FindFailed)  # answered again: the association was still usable


def test_many_matches_are_cancelled_at_the_limit() -> None:
    """Past the limit we send C-CANCEL-RQ; matches still in flight are dropped, the peer's
    Cancel status ends the query, and the association serves the next one."""
    seen: list[str] = []

    def handler(event: evt.Event) -> Iterator[tuple[Any, Dataset | None]]:
        if seen:  # the second query: one match
            yield 0xFF00, match(99)
            return
        seen.append("query")
        for number in range(1, 9):  # three past the limit, sent before the cancel is seen
            yield 0xFF00, match(number)
        if wait_until(lambda: event.is_cancelled, timeout=30, message="no C-CANCEL-RQ"):
            seen.append("cancelled")
            yield 0xFE00, None

    with find_scp(handler) as port:
        limited, after = on_scp(
            port, lambda a: a.find(study_query(), limit=5), lambda a: a.find(study_query())
        )
    assert [str(m.AccessionNumber) for m in limited] == ["M1", "M2", "M3", "M4", "M5"]
    assert seen == ["query", "cancelled"]
    assert [str(m.AccessionNumber) for m in after] == ["M99"]


def test_oversized_match_stops_the_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """A match over MAX_MATCH_BYTES (here lowered to 2 KB) is not kept: FindFailed saying so,
    after the query was cancelled and drained."""
    monkeypatch.setattr(find, "MAX_MATCH_BYTES", 2048)

    def handler(event: evt.Event) -> Iterator[tuple[Any, Dataset | None]]:
        yield 0xFF00, match(1)
        yield 0xFF00, match(2, StudyDescription="x" * 60, PatientComments="y" * 4000)
        for _ in range(1000):  # until the cancel is seen (bounded: a failed test ends)
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, match(3)

    with find_scp(handler) as port:
        failed, after = on_scp(
            port, lambda a: a.find(study_query()), lambda a: a.find(study_query(), limit=1)
        )
    assert isinstance(failed, FindFailed)
    assert failed.problem == "a match larger than 2,048 bytes"
    assert [str(m.AccessionNumber) for m in after] == ["M1"]


def test_silent_peer_times_out_on_silence() -> None:
    """A peer that stops answering mid-query: AssociationError naming the C-FIND after the
    DIMSE timeout, not a hang."""
    release = threading.Event()

    def handler(event: evt.Event) -> Iterator[tuple[Any, Dataset | None]]:
        yield 0xFF00, match(1)
        release.wait(30)
        yield 0xFF00, match(2)

    with find_scp(handler) as port:
        try:
            with pytest.raises(AssociationError, match=r"sent nothing for 0.5 s during a C-FIND"):
                on_scp(port, lambda a: a.find(study_query()), dimse_timeout=0.5)
        finally:
            release.set()


def test_non_ascii_match_is_decoded_in_its_character_set() -> None:
    """A match in UTF-8 (Specific Character Set ISO_IR 192) arrives decoded."""

    def handler(event: evt.Event) -> Iterator[tuple[Any, Dataset | None]]:
        yield 0xFF00, match(1, SpecificCharacterSet="ISO_IR 192", PatientName="Müller^Zoë")

    with find_scp(handler) as port:
        (found,) = on_scp(port, lambda a: a.find(study_query(PatientName="M*")))
    assert str(found[0].PatientName) == "Müller^Zoë"


def test_limit_below_one_is_refused() -> None:
    """limit=0 would cancel before asking: refused before anything is sent."""
    with find_scp(lambda event: iter(())) as port, pytest.raises(ValueError, match="at least 1"):
        on_scp(port, lambda a: a.find(study_query(), limit=0))
