"""Per-source limits over every job of the process: ``max_associations`` / ``max_requests``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mercure.core.config.models import DicomSource, DicomWebSource


def source_limit(source: DicomSource | DicomWebSource) -> int:
    """How many associations (DICOM) or requests (DICOMweb) the source takes at once."""
    return source.max_associations if isinstance(source, DicomSource) else source.max_requests


class SourceLimits:
    """One semaphore per source. A changed limit takes effect for slots taken after the change
    (slots already held are kept until they are given back)."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, name: str, source: DicomSource | DicomWebSource) -> AsyncIterator[None]:
        """Hold one of the source's slots for the block (waits while all are taken)."""
        key = (name, source_limit(source))
        semaphore = self._slots.get(key)
        if semaphore is None:
            semaphore = self._slots[key] = asyncio.Semaphore(key[1])
        async with semaphore:
            yield
