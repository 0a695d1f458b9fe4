"""Asking a source what it holds: C-FIND (DICOM sources) and QIDO-RS (DICOMweb sources).

Both answer the same two questions with the same types: which studies match a
:class:`QueryFilter` (:func:`find_studies`), and which series a study has
(:func:`find_series`), with the counts of related series and instances where the source
reports them, so that a retrieve job can tell a complete study from a short one. A source that
does not report a count gives ``None``, never 0.

C-FIND goes through the project's own DICOM upper layer (:meth:`Association.find
<mercure.dicomnet.requestor.Association.find>`) over the Study Root information model; QIDO-RS
uses httpx. Both are bounded: at most ``limit`` matches (a C-FIND is cancelled with C-CANCEL
past it; QIDO-RS asks with ``limit``), a C-FIND match of at most
:data:`~mercure.dicomnet.find.MAX_MATCH_BYTES` and a QIDO-RS answer of at most
:data:`MAX_ANSWER_BYTES`, and the source's ``timeout`` for every wait (a C-FIND's is on the
silence between its responses).

Errors are :class:`QueryError`, whose message names the source and what went wrong but never
the query's values (patient names and IDs are PHI) nor a credential.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from mercure.core.config.models import DicomSource, DicomWebSource, Source
from mercure.core.dicomwebclient import dicomweb_client, studies_path
from mercure.core.errors import TransientError
from mercure.core.masking import excerpt
from mercure.core.tlsclient import client_tls_context
from mercure.dicomnet.errors import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    FindFailed,
    PresentationContextError,
)
from mercure.dicomnet.find import find_contexts
from mercure.dicomnet.negotiation import ContextProposal
from mercure.dicomnet.pdu import RoleSelection
from mercure.dicomnet.requestor import Association

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 32 << 20
"""A QIDO-RS answer larger than this is refused: a query that matches too much, or a server
that does not honour ``limit``."""

SERIES_LIMIT = 10000
"""Series of one study at most (a study with more is a broken source, not a study)."""

STUDY_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "AccessionNumber",
    "StudyDate",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
)


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """What to look for at study level; ``None`` matches anything.

    Text values may hold DICOM wildcards (``*``, ``?``); dates are inclusive.
    """

    patient_id: str | None = None
    patient_name: str | None = None
    accession: str | None = None
    study_uid: str | None = None
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    modality: str | None = None
    study_description: str | None = None


@dataclass(frozen=True, slots=True)
class StudyMatch:
    """One study a source reported; counts are ``None`` when the source did not say."""

    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    study_date: str
    study_description: str
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None


@dataclass(frozen=True, slots=True)
class SeriesMatch:
    """One series of a study; ``instance_count`` is ``None`` when the source did not say."""

    study_uid: str
    series_uid: str
    modality: str
    series_description: str
    series_number: str
    instance_count: int | None


class QueryError(TransientError):
    """Source unreachable, association rejected, failure status, bad answer: the message says
    which source and what."""


_DATE = re.compile(r"\d{8}")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def _parse_date(text: str, whole: str) -> datetime.date:
    if not _DATE.fullmatch(text):
        raise ValueError(f"date range {whole!r}: {text!r} is not a date YYYYMMDD")
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise ValueError(f"date range {whole!r}: {text!r} is not a date ({exc})") from None


def parse_date_range(text: str) -> tuple[datetime.date | None, datetime.date | None]:
    """``"20250101-20250131"``, ``"20250101-"`` (from), ``"-20250131"`` (until) or
    ``"20250101"`` (that day) as (first, last) day; ValueError saying what is wrong."""
    whole = text
    text = text.strip()
    if text.count("-") > 1 or text in ("", "-"):
        raise ValueError(
            f"date range {whole!r}: expected YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD"
        )
    if "-" not in text:
        day = _parse_date(text, whole)
        return day, day
    first_text, last_text = text.split("-")
    first = _parse_date(first_text, whole) if first_text else None
    last = _parse_date(last_text, whole) if last_text else None
    if first and last and first > last:
        raise ValueError(f"date range {whole!r}: the first day is after the last")
    return first, last


def dicom_date_range(first: datetime.date | None, last: datetime.date | None) -> str | None:
    """The DICOM range matching value of two inclusive days (either may be open)."""
    if first is None and last is None:
        return None
    if first == last:
        return f"{first:%Y%m%d}"
    start = f"{first:%Y%m%d}" if first else ""
    end = f"{last:%Y%m%d}" if last else ""
    return f"{start}-{end}"


def _study_matching(query: QueryFilter) -> dict[str, str]:
    """The query's matching keys by DICOM keyword (only those that are set)."""
    values = {
        "PatientID": query.patient_id,
        "PatientName": query.patient_name,
        "AccessionNumber": query.accession,
        "StudyInstanceUID": query.study_uid,
        "StudyDate": dicom_date_range(query.date_from, query.date_to),
        "ModalitiesInStudy": query.modality,
        "StudyDescription": query.study_description,
    }
    return {keyword: value for keyword, value in values.items() if value}


async def find_studies(
    name: str, source: Source, query: QueryFilter, *, limit: int = 10000
) -> list[StudyMatch]:
    """The studies of ``source`` (named ``name``) that match ``query``, at most ``limit``.

    Exactly ``limit`` studies means the source may hold more: the caller says so (``mercure
    query`` does) or narrows the query.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    matching = _study_matching(query)
    if isinstance(source, DicomSource):
        found = await _c_find(name, source, "STUDY", matching, STUDY_KEYS, limit)
    else:
        found = await _qido(name, source, studies_path(source.qido_url_prefix), matching, limit)
    studies = [_study(record) for record in found]
    log.info("query %s: %d studies", name, len(studies))
    return studies


async def find_series(name: str, source: Source, study_uid: str) -> list[SeriesMatch]:
    """The series of study ``study_uid`` on ``source`` (named ``name``)."""
    if not _UID.fullmatch(study_uid):
        raise ValueError(f"find_series: {study_uid[:80]!r} is not a study instance UID")
    if isinstance(source, DicomSource):
        found = await _c_find(
            name, source, "SERIES", {"StudyInstanceUID": study_uid}, SERIES_KEYS, SERIES_LIMIT
        )
    else:
        path = f"{studies_path(source.qido_url_prefix)}/{study_uid}/series"
        found = await _qido(name, source, path, {}, SERIES_LIMIT)
    return [_series(record, study_uid) for record in found]


# --- The records both protocols produce: DICOM keyword -> list of text values -----------------

Record = Mapping[str, list[str]]


def _first(record: Record, keyword: str) -> str:
    values = record.get(keyword) or [""]
    return values[0]


def _count(record: Record, keyword: str) -> int | None:
    text = _first(record, keyword).strip()
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _study(record: Record) -> StudyMatch:
    return StudyMatch(
        study_uid=_first(record, "StudyInstanceUID"),
        patient_id=_first(record, "PatientID"),
        patient_name=_first(record, "PatientName"),
        accession=_first(record, "AccessionNumber"),
        study_date=_first(record, "StudyDate"),
        study_description=_first(record, "StudyDescription"),
        modalities=tuple(m for m in record.get("ModalitiesInStudy", []) if m),
        series_count=_count(record, "NumberOfStudyRelatedSeries"),
        instance_count=_count(record, "NumberOfStudyRelatedInstances"),
    )


def _series(record: Record, study_uid: str) -> SeriesMatch:
    return SeriesMatch(
        study_uid=_first(record, "StudyInstanceUID") or study_uid,
        series_uid=_first(record, "SeriesInstanceUID"),
        modality=_first(record, "Modality"),
        series_description=_first(record, "SeriesDescription"),
        series_number=_first(record, "SeriesNumber"),
        instance_count=_count(record, "NumberOfSeriesRelatedInstances"),
    )


# --- C-FIND ------------------------------------------------------------------------------------


def _identifier(level: str, matching: Mapping[str, str], keys: Iterable[str]) -> Dataset:
    """The C-FIND request identifier: every return key empty, the matching keys set."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in keys:
        setattr(ds, keyword, "")
    for keyword, value in matching.items():
        setattr(ds, keyword, value)
    if any(not value.isascii() for value in matching.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _record(identifier: Dataset, keys: Iterable[str]) -> dict[str, list[str]]:
    """The text values of a C-FIND answer's return keys."""
    record: dict[str, list[str]] = {}
    for keyword in keys:
        value = identifier.get(keyword)
        if value is None or value == "":
            record[keyword] = []
        elif isinstance(value, MultiValue | list | tuple):
            record[keyword] = [str(item) for item in value]
        else:
            record[keyword] = [str(value)]
    return record


def describe(name: str, source: DicomSource) -> str:
    """How messages name a DICOM source: ``source 'pacs' (PACS@host:104)``."""
    return f"source {name!r} ({source.aet_target}@{source.host}:{source.port})"


@contextlib.asynccontextmanager
async def source_association(
    name: str,
    source: DicomSource,
    contexts: Sequence[ContextProposal],
    roles: Sequence[RoleSelection] = (),
) -> AsyncIterator[Association]:
    """An established association to ``source`` proposing ``contexts`` (and ``roles``: the
    SCP role for storage, for C-GET), with the source's TLS and its ``timeout`` for
    connecting, the handshake and each answer; released on exit (or aborted, when the block
    raises).

    QueryError when it cannot be had: unreachable, TLS settings unusable, rejected, or
    aborted during the handshake (a TLS mismatch, usually).
    """
    where = describe(name, source)
    ssl_context = None
    if source.tls is not None:
        try:
            ssl_context = client_tls_context(source.tls)
        except (OSError, ssl.SSLError) as exc:
            raise QueryError(f"{where}: TLS settings unusable: {exc}") from exc
    try:
        association = await Association.connect(
            source.host,
            source.port,
            called_aet=source.aet_target,
            calling_aet=source.aet_source,
            contexts=contexts,
            roles=roles,
            ssl_context=ssl_context,
            server_hostname=source.host,
            connect_timeout=source.timeout,
            acse_timeout=source.timeout,
            dimse_timeout=source.timeout,
        )
    except AssociationError as exc:
        raise QueryError(_association_problem(where, source, exc)) from exc
    async with association:
        yield association


def _association_problem(where: str, source: DicomSource, exc: AssociationError) -> str:
    """What to tell about an association that could not be had, with what to check."""
    if isinstance(exc, AssociationRejected):
        return (
            f"{where} rejected the association ({exc}; is our AE title {source.aet_source} "
            "known there?)"
        )
    if isinstance(exc, AssociationAborted):
        tls = "with" if source.tls else "without"
        return (
            f"{where}: no association ({exc}; does the PACS expect the connection {tls} TLS "
            "as configured?)"
        )
    cause = exc.__cause__
    if isinstance(cause, TimeoutError):
        return f"{where}: cannot connect: no answer within {source.timeout:g} s"
    if isinstance(cause, OSError) and source.tls is not None:
        # A reset during the handshake, usually: a port without TLS, or our certificate refused.
        return f"{where}: cannot connect over TLS: {cause} (does the PACS use TLS on this port?)"
    if isinstance(cause, OSError):
        return f"{where}: cannot connect: {cause}"
    return f"{where}: {exc}"


def _failure_text(failure: FindFailed) -> str:
    if failure.problem:
        return f"stopped: the PACS answered with {failure.problem}"
    comment = excerpt(failure.comment)
    return f"failed with status 0x{failure.status:04X}" + (f": {comment}" if comment else "")


async def _c_find(
    name: str,
    source: DicomSource,
    level: str,
    matching: Mapping[str, str],
    keys: tuple[str, ...],
    limit: int,
) -> list[dict[str, list[str]]]:
    """One C-FIND on its own association: the matches' return keys, at most ``limit`` of them
    (the rest is cancelled with C-CANCEL)."""
    where = describe(name, source)
    failure: FindFailed | None = None
    async with source_association(name, source, find_contexts("study")) as association:
        try:
            matches = await association.find(_identifier(level, matching, keys), limit=limit)
        except FindFailed as exc:
            failure = exc  # answered: the association is released, not aborted
        except PresentationContextError as exc:
            raise QueryError(f"{where} does not offer C-FIND in the Study Root model") from exc
        except AssociationError as exc:
            raise QueryError(
                f"{where}: the C-FIND failed ({exc}); does the PACS allow queries from our "
                f"AE title {source.aet_source}?"
            ) from exc
    if failure is not None:
        raise QueryError(f"{where}: C-FIND at {level} level {_failure_text(failure)}") from failure
    if len(matches) >= limit:
        log.info("query %s: stopped at %d matches (the limit)", name, limit)
    return [_record(match, keys) for match in matches]


# --- QIDO-RS -----------------------------------------------------------------------------------


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


KEYWORD_OF_TAG = {_tag(keyword): keyword for keyword in {*STUDY_KEYS, *SERIES_KEYS}}


def _json_value(item: Any) -> str:
    """One value of a PS3.18 F.2 JSON attribute as text (PN as its Alphabetic group)."""
    if isinstance(item, dict):
        return str(item.get("Alphabetic", ""))
    if isinstance(item, float) and item.is_integer():
        return str(int(item))
    return "" if item is None else str(item)


def _json_record(document: Any) -> dict[str, list[str]]:
    if not isinstance(document, dict):
        raise ValueError("a match is not a JSON object")
    record: dict[str, list[str]] = {}
    for tag, keyword in KEYWORD_OF_TAG.items():
        attribute = document.get(tag)
        if isinstance(attribute, dict):
            record[keyword] = [_json_value(item) for item in attribute.get("Value") or []]
    return record


def query_string(params: Iterable[tuple[str, str]]) -> str:
    """A QIDO-RS query string with the wildcards ``*`` and ``?`` left as they are.

    Both are legal in a URL's query (RFC 3986), and some servers (Orthanc's DICOMweb plugin
    1.7) match the percent-encoded forms that httpx would send literally; everything else is
    percent-encoded.
    """
    return "&".join(f"{quote(key)}={quote(value, safe='*?')}" for key, value in params)


async def _qido(
    name: str,
    source: DicomWebSource,
    path: str,
    matching: Mapping[str, str],
    limit: int,
) -> list[dict[str, list[str]]]:
    """One QIDO-RS search (``path`` under the source's URL): the matches' attributes."""
    where = f"source {name!r} ({source.url})"
    params = list(matching.items())
    includes = STUDY_KEYS if path.endswith("/studies") else SERIES_KEYS
    params += [("includefield", _tag(keyword)) for keyword in includes]
    params.append(("limit", str(limit)))
    body = bytearray()
    try:
        async with (
            dicomweb_client(source, httpx.Timeout(source.timeout)) as client,
            client.stream("GET", f"{path}?{query_string(params)}") as response,
        ):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise QueryError(
                        f"{where}: QIDO-RS answer larger than {MAX_ANSWER_BYTES:,} bytes; "
                        "narrow the query"
                    )
    except httpx.HTTPError as exc:
        # Not str(exc) alone: some carry the URL, whose query string holds the search values.
        raise QueryError(f"{where}: QIDO-RS failed: {type(exc).__name__}") from exc
    status = response.status_code
    if status in (401, 403):
        raise QueryError(f"{where} refused the credentials (HTTP {status})")
    if status == 204 or (status == 200 and not body.strip()):
        return []
    text = body.decode("utf-8", "replace")
    if status >= 300:
        raise QueryError(f"{where}: QIDO-RS answered HTTP {status}: {excerpt(text)}")
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise ValueError("the answer is not a JSON array")
        found = [_json_record(item) for item in document]
    except ValueError as exc:
        raise QueryError(f"{where}: QIDO-RS answer is not DICOM JSON: {exc}") from None
    if len(found) >= limit:
        log.info("query %s: %d matches, the limit; the source may hold more", name, limit)
    return found[:limit]
