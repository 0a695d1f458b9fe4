"""Queries against a real PACS: C-FIND and QIDO-RS to Orthanc (with its DICOMweb plugin)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore
from retrieve_pacs import PLANS, TestPacs

from mercure.core.config.models import DicomSource, DicomWebSource, Source
from mercure.core.logs import QUIET_LOGGERS
from mercure.retriever import query
from mercure.retriever.query import (
    QueryError,
    QueryFilter,
    find_series,
    find_studies,
    parse_date_range,
)
from mercure.testing.peers import Orthanc
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series

KINDS = ["dicom", "dicomweb"]


def source_of(pacs: TestPacs, kind: str) -> Source:
    """The configured source reaching the test PACS by C-FIND or by QIDO-RS."""
    if kind == "dicom":
        return DicomSource(
            type="dicom",
            host="127.0.0.1",
            port=pacs.orthanc.dicom_port,
            aet_target=pacs.orthanc.aet,
            timeout=20,
        )
    return DicomWebSource(type="dicomweb", url=pacs.orthanc.dicomweb_url, timeout=20)


def studies(pacs: TestPacs, kind: str, **query: Any) -> list[Any]:
    limit = query.pop("limit", 10000)
    return asyncio.run(
        find_studies("pacs", source_of(pacs, kind), QueryFilter(**query), limit=limit)
    )


@pytest.mark.peers
@pytest.mark.parametrize("kind", KINDS)
def test_find_by_accession_reports_the_study_and_its_counts(pacs: TestPacs, kind: str) -> None:
    """One accession number finds its one study, with patient, date, modalities and counts."""
    (match,) = studies(pacs, kind, accession="ACC-A1")
    assert match.study_uid == pacs.study_uids["ACC-A1"]
    assert (match.patient_id, match.patient_name) == ("PAT1", "Alpha^Anna")
    assert (match.accession, match.study_date) == ("ACC-A1", "20250105")
    assert match.study_description == "CT HEAD"
    assert match.modalities == ("CT",)
    assert (match.series_count, match.instance_count) == (2, 5)


@pytest.mark.peers
@pytest.mark.parametrize("kind", KINDS)
def test_find_by_date_range_keeps_the_days_inclusive(pacs: TestPacs, kind: str) -> None:
    """January 2025 holds three studies; an open end reaches the later ones too."""
    january = studies(
        pacs, kind, date_from=datetime.date(2025, 1, 5), date_to=datetime.date(2025, 1, 20)
    )
    assert pacs.accessions([m.study_uid for m in january]) == {"ACC-A1", "ACC-B1", "ACC-C1"}
    since = studies(pacs, kind, date_from=datetime.date(2025, 2, 1))
    assert pacs.accessions([m.study_uid for m in since]) == {"ACC-A2", "ACC-C2"}
    until = studies(pacs, kind, date_to=datetime.date(2024, 12, 31))
    assert pacs.accessions([m.study_uid for m in until]) == {"ACC-B2"}


@pytest.mark.peers
@pytest.mark.parametrize("kind", KINDS)
def test_find_by_modality_patient_and_description_wildcard(pacs: TestPacs, kind: str) -> None:
    """Modality, patient ID and a description with a wildcard each narrow the studies."""
    by_modality = studies(pacs, kind, modality="MR")
    assert pacs.accessions([m.study_uid for m in by_modality]) == {"ACC-A2", "ACC-C1"}
    by_patient = studies(pacs, kind, patient_id="PAT2")
    assert pacs.accessions([m.study_uid for m in by_patient]) == {"ACC-B1", "ACC-B2"}
    by_description = studies(pacs, kind, study_description="CT*")
    assert pacs.accessions([m.study_uid for m in by_description]) == {"ACC-A1", "ACC-B1", "ACC-C2"}
    by_name = studies(pacs, kind, patient_name="Gamma*", modality="CT")
    assert pacs.accessions([m.study_uid for m in by_name]) == {"ACC-C2"}


@pytest.mark.peers
@pytest.mark.parametrize("kind", KINDS)
def test_find_stops_at_the_limit(pacs: TestPacs, kind: str) -> None:
    """A limit below the number of matches gives exactly that many."""
    assert len(studies(pacs, kind)) == len(PLANS)
    assert len(studies(pacs, kind, limit=2)) == 2


@pytest.mark.peers
@pytest.mark.parametrize("kind", KINDS)
def test_find_series_reports_instance_counts(pacs: TestPacs, kind: str) -> None:
    """The series of a study come with modality, description, number and instance count."""
    found = asyncio.run(find_series("pacs", source_of(pacs, kind), pacs.study_uids["ACC-C1"]))
    by_description = {s.series_description: s for s in found}
    assert set(by_description) == {"pd", "t2"}
    assert by_description["pd"].instance_count == 2
    assert by_description["t2"].instance_count == 1
    assert by_description["pd"].modality == "MR"
    assert by_description["pd"].series_number == "1"
    assert {s.study_uid for s in found} == {pacs.study_uids["ACC-C1"]}
    assert len({s.series_uid for s in found}) == 2


def test_unreachable_dicom_source_names_the_source_and_not_the_patient() -> None:
    """A closed port is a QueryError naming source and address, never the query's values."""
    source = DicomSource(
        type="dicom", host="127.0.0.1", port=free_port(), aet_target="PACS", timeout=5
    )
    with pytest.raises(QueryError) as raised:
        asyncio.run(find_studies("archive", source, QueryFilter(patient_name="Secret^Name")))
    message = str(raised.value)
    assert "'archive'" in message and f"127.0.0.1:{source.port}" in message
    assert "Secret" not in message


def test_unreachable_dicomweb_source_names_the_source_and_not_the_patient() -> None:
    """A closed port over HTTP is a QueryError too, without the query string."""
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    source = DicomWebSource(type="dicomweb", url=url, timeout=5)
    with pytest.raises(QueryError) as raised:
        asyncio.run(find_studies("web", source, QueryFilter(patient_id="SECRET-ID")))
    message = str(raised.value)
    assert "'web'" in message and url in message
    assert "SECRET" not in message


@pytest.mark.peers
def test_dicomweb_error_status_is_a_query_error(pacs: TestPacs) -> None:
    """A wrong QIDO-RS prefix answers 404: a QueryError with the status."""
    source = DicomWebSource(type="dicomweb", url=pacs.orthanc.base_url, qido_url_prefix="nothing")
    with pytest.raises(QueryError, match="HTTP 404"):
        asyncio.run(find_studies("web", source, QueryFilter()))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20250101-20250131", (datetime.date(2025, 1, 1), datetime.date(2025, 1, 31))),
        ("20250101-", (datetime.date(2025, 1, 1), None)),
        ("-20250131", (None, datetime.date(2025, 1, 31))),
        ("20250101", (datetime.date(2025, 1, 1), datetime.date(2025, 1, 1))),
    ],
)
def test_date_range_forms(text: str, expected: tuple[Any, Any]) -> None:
    """The four forms of a DICOM date range."""
    assert parse_date_range(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2025-01-01", "expected YYYYMMDD"),
        ("20250132", "'20250132' is not a date"),
        ("2025010", "is not a date YYYYMMDD"),
        ("20250201-20250101", "first day is after the last"),
        ("-", "expected YYYYMMDD"),
        ("", "expected YYYYMMDD"),
        ("yesterday", "is not a date YYYYMMDD"),
    ],
)
def test_bad_date_range_says_what_is_wrong(text: str, says: str) -> None:
    """A date range that is not one names the text and what is wrong with it."""
    with pytest.raises(ValueError, match=says):
        parse_date_range(text)


@pytest.mark.peers
def test_c_find_over_tls_with_a_client_certificate(
    orthanc_factory: Any, pki: Path, tmp_path: Path
) -> None:
    """Orthanc with DICOM TLS (client certificate required): the query goes through with the
    source's tls settings, and fails with a QueryError without them."""
    tls = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(pki / "server.pem"),
        "DicomTlsPrivateKey": str(pki / "server.key"),
        "DicomTlsTrustedCertificates": str(pki / "ca.pem"),
        "DicomTlsRemoteCertificateRequired": True,
    }
    orthanc = orthanc_factory(
        modalities={"mercure": ("MERCURE", "127.0.0.1", free_port())}, config=tls
    )
    orthanc.upload(generate_series(tmp_path / "series", "tiny", 1, accession_number="TLS1").paths)
    settings = {"type": "dicom", "host": "127.0.0.1", "port": orthanc.dicom_port,
                "aet_target": orthanc.aet, "timeout": 10}  # fmt: skip
    secure = DicomSource(
        **settings,
        tls={"ca_certificate": pki / "ca.pem", "certificate": pki / "client.pem",
             "key": pki / "client.key"},
    )  # fmt: skip
    (match,) = asyncio.run(find_studies("tls", secure, QueryFilter(accession="TLS1")))
    assert match.accession == "TLS1"
    with pytest.raises(QueryError, match="'tls'"):
        asyncio.run(find_studies("tls", DicomSource(**settings), QueryFilter()))


@pytest.mark.peers
def test_qido_answer_over_the_size_bound_is_refused(
    pacs: TestPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer larger than MAX_ANSWER_BYTES (here lowered to 4 KB) stops the read with a
    QueryError that says to narrow the query."""
    monkeypatch.setattr(query, "MAX_ANSWER_BYTES", 4096)
    with pytest.raises(QueryError, match=r"QIDO-RS answer larger than .*narrow the query"):
        studies(pacs, "dicomweb")
    assert len(studies(pacs, "dicomweb", accession="ACC-A1")) == 1  # a small answer passes


@pytest.mark.peers
@pytest.mark.parametrize("kind", KINDS)
def test_no_patient_data_in_the_log_at_info(
    pacs: TestPacs, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A query by patient name and ID logs neither at INFO, with the services' logging policy
    (httpx, which logs each URL, held at WARNING)."""
    caplog.set_level(logging.INFO)
    quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        found = studies(pacs, kind, patient_name="Alpha*", patient_id="PAT1")
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    assert len(found) == 2
    assert caplog.records, "the query logged nothing at all: the check would prove nothing"
    assert "Alpha" not in caplog.text and "PAT1" not in caplog.text


@pytest.mark.peers
def test_rejected_association_is_a_query_error(orthanc_factory: Any) -> None:
    """A PACS that rejects the association (here: a called AE title it does not answer to)
    is a QueryError saying so, with our AE title to check."""
    orthanc = orthanc_factory(config={"DicomCheckCalledAet": True})
    source = DicomSource(
        type="dicom", host="127.0.0.1", port=orthanc.dicom_port, aet_target="NOT-ORTHANC"
    )
    with pytest.raises(QueryError, match=r"rejected the association .*MERCURE"):
        asyncio.run(find_series("pacs", source, "1.2.3"))


@pytest.mark.peers
def test_pacs_that_does_not_know_our_ae_title_is_a_query_error(orthanc: Orthanc) -> None:
    """Orthanc accepts the association of an AE title it does not know but aborts its C-FIND:
    a QueryError that says to check our AE title there."""
    source = DicomSource(
        type="dicom", host="127.0.0.1", port=orthanc.dicom_port, aet_target=orthanc.aet
    )
    with pytest.raises(QueryError, match=r"the C-FIND failed .*our AE title MERCURE"):
        asyncio.run(find_studies("pacs", source, QueryFilter()))


@pytest.mark.parametrize("uid", ["", "1.2/../studies", "1.2.3 ", "abc"])
def test_find_series_refuses_what_is_no_uid(uid: str) -> None:
    """A study UID that is none (it would go into a QIDO-RS path) is refused before any call."""
    source = DicomWebSource(type="dicomweb", url="http://127.0.0.1:9/dicom-web")
    with pytest.raises(ValueError, match="is not a study instance UID"):
        asyncio.run(find_series("web", source, uid))


def test_c_find_failure_status_is_a_query_error_with_the_peers_comment() -> None:
    """A PACS (pynetdicom here) answering the C-FIND with a failure status: a QueryError
    naming the source, the level, the status and the PACS's comment."""

    def handler(event: evt.Event) -> Iterator[tuple[Dataset, None]]:
        status = Dataset()
        status.Status = 0xA700
        status.ErrorComment = "index offline"
        yield status, None

    ae = AE(ae_title="PACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, handler)]
    )
    source = DicomSource(type="dicom", host="127.0.0.1", port=port, aet_target="PACS", timeout=10)
    try:
        with pytest.raises(QueryError) as raised:
            asyncio.run(find_studies("archive", source, QueryFilter(accession="X1")))
    finally:
        server.shutdown()
    assert str(raised.value) == (
        f"source 'archive' (PACS@127.0.0.1:{port}): C-FIND at STUDY level failed with status "
        "0xA700: index offline"
    )
