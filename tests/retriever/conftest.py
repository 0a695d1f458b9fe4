"""Fixtures of the retriever tests: one filled Orthanc for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from retrieve_pacs import TestPacs, fill

from mercure.testing.peers import Orthanc
from mercure.testing.ports import free_port


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPacs]:
    """Orthanc with the six studies of retrieve_pacs.PLANS; tests only read it."""
    workdir = tmp_path_factory.mktemp("query-pacs")
    # Orthanc answers C-FIND only for the AE titles it knows, as most PACS do.
    modalities = {"mercure": ("MERCURE", "127.0.0.1", free_port())}
    with Orthanc(workdir / "orthanc", modalities=modalities) as orthanc:
        yield fill(orthanc, workdir / "studies")
