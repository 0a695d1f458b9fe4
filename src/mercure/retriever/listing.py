"""What the engine needs from a query: the studies of an accession, the series of a study.

A thin layer over :mod:`mercure.retriever.query` (C-FIND or QIDO-RS, as the source is): it
turns matches into what a job records (UIDs and instance counts) and what a series filter sees
(DICOM keywords to text), and every query failure into :class:`RetrieveFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mercure.core.config.models import DicomSource, DicomWebSource
from mercure.retriever import query
from mercure.retriever.fetching import RetrieveFailed


@dataclass(frozen=True, slots=True)
class ListedSeries:
    """One series the source lists for a study."""

    series_uid: str
    expected: int | None
    """Instances the source says the series has (None if it did not say)."""
    tags: dict[str, str]
    """The series' and its study's attributes by DICOM keyword, for ``--series-filter``."""


async def studies_of_accession(
    name: str, source: DicomSource | DicomWebSource, accession: str
) -> list[tuple[str, dict[str, str]]]:
    """``(StudyInstanceUID, study tags)`` of every study with this accession number."""
    try:
        matches = await query.find_studies(name, source, query.QueryFilter(accession=accession))
    except query.QueryError as exc:
        raise RetrieveFailed(str(exc)) from exc
    found: dict[str, dict[str, str]] = {}
    for match in matches:
        # A source may match loosely (wildcards in its data): keep exact matches only.
        if match.study_uid and match.accession in (accession, "") and match.study_uid not in found:
            found[match.study_uid] = {
                "StudyInstanceUID": match.study_uid,
                "AccessionNumber": match.accession,
                "StudyDate": match.study_date,
                "StudyDescription": match.study_description,
                "ModalitiesInStudy": "\\".join(match.modalities),
            }
    return list(found.items())


async def series_of_study(
    name: str, source: DicomSource | DicomWebSource, study_uid: str, study_tags: dict[str, str]
) -> list[ListedSeries]:
    """The series the source lists for a study, with their instance counts."""
    try:
        matches = await query.find_series(name, source, study_uid)
    except query.QueryError as exc:
        raise RetrieveFailed(str(exc)) from exc
    listed: dict[str, ListedSeries] = {}
    for match in matches:
        if not match.series_uid or match.series_uid in listed:
            continue
        tags = {
            **study_tags,
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": match.series_uid,
            "Modality": match.modality,
            "SeriesDescription": match.series_description,
            "SeriesNumber": match.series_number,
        }
        listed[match.series_uid] = ListedSeries(match.series_uid, match.instance_count, tags)
    return list(listed.values())
