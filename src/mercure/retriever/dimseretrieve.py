"""C-GET and C-MOVE fetchers: one association per fetch, Study Root, study or series level.

The association is the query's (:func:`~mercure.retriever.query.source_association`: TLS,
timeouts, and errors that say what to check). A study is asked for in one request when the
whole of it is wanted, else one request per series (a UID list in one request is allowed by
the standard but not understood by every PACS). The DIMSE timeout is the source's ``timeout``
and applies to the silence between responses, so a large study is not cut short while it
flows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pydicom.dataset import Dataset

from mercure.core.config import MercureConfig
from mercure.core.config.models import DicomSource
from mercure.dicomnet import dimse
from mercure.dicomnet.errors import AssociationError
from mercure.dicomnet.retrieve import RetrieveResult, get_contexts, move_contexts
from mercure.retriever.fetching import FetchReport, RetrieveFailed
from mercure.retriever.landing import Landing
from mercure.retriever.query import QueryError, source_association


def identifiers(study_uid: str, series_uids: Sequence[str] | None) -> Iterator[Dataset]:
    """The C-GET / C-MOVE identifiers for a study or some of its series."""
    if series_uids is None:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study_uid
        yield ds
        return
    for series_uid in series_uids:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        yield ds


def _add(report: FetchReport, name: str, what: str, result: RetrieveResult) -> None:
    report.completed += result.completed
    report.failed += result.failed
    if not dimse.is_success(result.status) or result.failed:
        comment = f" ({result.error_comment})" if result.error_comment else ""
        report.warning = (
            f"source {name} answered the {what} with status 0x{result.status:04X}{comment}, "
            f"{result.failed} sub-operation(s) failed"
        )


class CGetFetcher:
    """C-GET: the instances come on our own association and are placed as C-STORE'd ones."""

    def __init__(self, name: str, source: DicomSource, landing: Landing) -> None:
        self.name = name
        self.source = source
        self.landing = landing

    async def fetch(self, study_uid: str, series_uids: Sequence[str] | None) -> FetchReport:
        """Fetch the study, or the given series of it, by C-GET."""
        contexts, roles = get_contexts("study")
        report = FetchReport()
        source = self.source
        with self.landing.arrival(source.aet_target, source.aet_source, source.host) as arrival:
            try:
                async with source_association(self.name, source, contexts, roles) as association:
                    for identifier in identifiers(study_uid, series_uids):
                        result = await association.get(identifier, open_store=arrival.open_store)
                        _add(report, self.name, "C-GET", result)
                arrival.released = True
            except QueryError as exc:
                raise RetrieveFailed(str(exc)) from exc
            except AssociationError as exc:
                raise RetrieveFailed(f"source {self.name}: C-GET: {exc}") from exc
        return report


class CMoveFetcher:
    """C-MOVE: the PACS sends to one of our listeners; the receiver places the instances."""

    def __init__(self, name: str, source: DicomSource, config: MercureConfig) -> None:
        self.name = name
        self.source = source
        listeners = config.receiver.listeners
        self.destination = source.move_destination or (listeners[0].aet if listeners else "")

    async def fetch(self, study_uid: str, series_uids: Sequence[str] | None) -> FetchReport:
        """Fetch the study, or the given series of it, by C-MOVE to our listener."""
        if not self.destination:
            raise RetrieveFailed(
                f"source {self.name}: no move_destination and no listener to move to"
            )
        report = FetchReport()
        try:
            async with source_association(
                self.name, self.source, move_contexts("study")
            ) as association:
                for identifier in identifiers(study_uid, series_uids):
                    result = await association.move(identifier, self.destination)
                    _add(report, self.name, "C-MOVE", result)
        except QueryError as exc:
            raise RetrieveFailed(str(exc)) from exc
        except AssociationError as exc:
            raise RetrieveFailed(f"source {self.name}: C-MOVE: {exc}") from exc
        return report
