"""WADO-RS fetcher: a study's series streamed as ``multipart/related`` DICOM parts.

Each series is one request to ``<url>[/<wado prefix>]/studies/{study}/series/{series}`` (the
whole study when all of it is wanted) asking for the instances as stored
(``transfer-syntax=*``). The answer is read chunk by chunk; each part goes through
:class:`~mercure.core.ingest.part10.Part10Stream` into the placer's sink as it arrives, so no
instance, let alone a study, is ever held in memory. A part that is not a DICOM file, or is of
another study, is not kept (the count then falls short and the series is tried again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from mercure.core.config.models import DicomWebSource
from mercure.core.dicomwebclient import dicomweb_client, studies_path
from mercure.core.ingest.multipart import (
    MultipartError,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
    content_type_parameters,
)
from mercure.core.ingest.part10 import Part10Error, Part10Stream, ingest_association
from mercure.dicomnet.dimse import SUCCESS
from mercure.dicomnet.errors import StoreRefused
from mercure.retriever.fetching import FetchReport, RetrieveFailed
from mercure.retriever.landing import Arrival, Landing

log = logging.getLogger(__name__)

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
RECEIVER_AET = "WADO-RS"
"""The series' ReceiverAET for instances fetched by WADO-RS (there is no called AE)."""


class WadoFetcher:
    """WADO-RS: instances streamed over HTTP and placed as C-STORE'd ones."""

    def __init__(self, name: str, source: DicomWebSource, landing: Landing) -> None:
        self.name = name
        self.source = source
        self.landing = landing

    async def fetch(self, study_uid: str, series_uids: Sequence[str] | None) -> FetchReport:
        """Fetch the study, or the given series of it, by WADO-RS."""
        base = f"{studies_path(self.source.wado_url_prefix)}/{study_uid}"
        paths = [base] if series_uids is None else [f"{base}/series/{s}" for s in series_uids]
        report = FetchReport()
        timeout = httpx.Timeout(self.source.timeout)
        host = httpx.URL(str(self.source.url)).host
        sender = self.name[:16]
        try:
            async with dicomweb_client(self.source, timeout) as client:
                for path in paths:
                    with self.landing.arrival(sender, RECEIVER_AET, host) as arrival:
                        await self._one(client, path, study_uid, arrival, report)
                        arrival.released = True
        except httpx.HTTPError as exc:
            raise RetrieveFailed(
                f"source {self.name}: WADO-RS: {type(exc).__name__}: {exc}"
            ) from exc
        return report

    async def _one(
        self,
        client: httpx.AsyncClient,
        path: str,
        study_uid: str,
        arrival: Arrival,
        report: FetchReport,
    ) -> None:
        async with client.stream("GET", path, headers={"Accept": ACCEPT}) as response:
            if response.status_code != 200:
                raise RetrieveFailed(
                    f"source {self.name}: WADO-RS answered HTTP {response.status_code} "
                    f"{response.reason_phrase}"
                )
            media, parameters = content_type_parameters(response.headers.get("content-type", ""))
            boundary = parameters.get("boundary")
            if media != "multipart/related" or not boundary:
                raise RetrieveFailed(
                    f"source {self.name}: WADO-RS answered {media or 'no content type'}, not "
                    "multipart/related with a boundary"
                )
            association = ingest_association(
                arrival.state.calling_aet, arrival.state.called_aet, (arrival.state.address, 0)
            )
            reader = MultipartReader(boundary)
            stream: Part10Stream | None = None
            try:
                async for chunk in response.aiter_bytes():
                    for event in reader.feed(chunk):
                        if isinstance(event, PartStart):
                            stream = Part10Stream(
                                association, arrival.open_store, expected_study_uid=study_uid
                            )
                        elif isinstance(event, PartData) and stream is not None:
                            stream.feed(event.data)
                        elif isinstance(event, PartEnd) and stream is not None:
                            part, stream = stream, None
                            status = await part.finish()
                            if status == SUCCESS:
                                report.completed += 1
                            else:
                                report.failed += 1
                                report.warning = f"an instance was not kept: {part.reason}"
            except (MultipartError, Part10Error, StoreRefused) as exc:
                raise RetrieveFailed(f"source {self.name}: WADO-RS answer: {exc}") from exc
            finally:
                if stream is not None:
                    stream.abort()
