"""What the engine asks of a retrieve method: fetch a study, or some of its series.

Three methods implement it: C-GET (:mod:`.cget`, instances on our own association, placed by
the retriever), C-MOVE (:mod:`.cmove`, the PACS sends to one of our listeners) and WADO-RS
(:mod:`.wado`, streamed multipart, placed by the retriever). The engine does not trust their
own counts: it verifies against the journals in ``incoming/`` (:mod:`.verify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mercure.core.errors import TransientError


class RetrieveFailed(TransientError):
    """A query or retrieve did not go through (source down, timeout, refusal): one try used."""


@dataclass(slots=True)
class FetchReport:
    """What the source said about one fetch (informative; the journals decide)."""

    completed: int = 0
    failed: int = 0
    warning: str | None = None
    """A problem the source reported although the request went through, or None."""


class Fetcher(Protocol):
    """Fetches instances of one source into ``incoming/``."""

    async def fetch(self, study_uid: str, series_uids: Sequence[str] | None) -> FetchReport:
        """Fetch the whole study (``series_uids`` None) or the given series of it.

        Raises :class:`RetrieveFailed` when the source cannot be reached or refuses.
        """
        ...
