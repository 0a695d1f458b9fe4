"""The test frame as a pytest plugin: ``pytest_plugins = ["mercure.testing.fixtures"]``.

Fixtures:

- ``free_port``: a free TCP port on 127.0.0.1.
- ``storescp``: factory ``storescp(**StoreSCP kwargs) -> StoreSCP``, started, stopped at the end.
- ``orthanc``: the session's Orthanc, reset (no data, initial modalities) before the test.
- ``orthanc_session``: that shared Orthanc itself (started on first use).
- ``orthanc_factory``: factory for a dedicated Orthanc (own config), stopped at the end.
- ``series_cache``: session cache of generated series, ``series_cache.get(kind, count, **kw)``.
- ``ct_series`` / ``mr_series`` / ``tiny_series``: session-wide series (read-only: copy them or
  use ``make_series`` for files a test may move or change).
- ``make_series``: factory generating fresh series into the test's tmp_path.

Every test starts and ends with no registered secret (``mercure.core.masking``): a configuration
loaded in the test process registers its secrets, which must not mask another test's texts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mercure.core import masking
from mercure.testing import ports
from mercure.testing.checks import assert_no_partial_files
from mercure.testing.peers import Orthanc, StoreSCP
from mercure.testing.series import GeneratedSeries, generate_series

__all__ = ["SeriesCache", "assert_no_partial_files"]


class SeriesCache:
    """Generated series kept for the whole session, keyed by the generator's arguments."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._series: dict[str, GeneratedSeries] = {}

    def get(self, kind: str = "tiny", count: int = 10, **kwargs: Any) -> GeneratedSeries:
        """The series ``generate_series(folder, kind, count, **kwargs)`` writes, made once."""
        arguments = json.dumps([kind, count, kwargs], sort_keys=True, default=str)
        key = hashlib.sha256(arguments.encode()).hexdigest()[:16]
        if key not in self._series:
            folder = self.root / f"{kind}-{count}-{key}"
            self._series[key] = generate_series(folder, kind, count, **kwargs)
        return self._series[key]


@pytest.fixture(autouse=True)
def _no_secrets_from_other_tests() -> Iterator[None]:
    masking.registry().clear()
    yield
    masking.registry().clear()


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1, never handed out before in this process."""
    return ports.free_port()


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Callable[..., StoreSCP]]:
    """Factory starting DCMTK storescp receivers (output in tmp_path); all stopped afterwards."""
    started: list[StoreSCP] = []
    numbers = itertools.count(1)

    def start(output_dir: Path | None = None, **kwargs: Any) -> StoreSCP:
        scp = StoreSCP(output_dir or tmp_path / f"storescp{next(numbers)}", **kwargs)
        started.append(scp)
        return scp.start()

    yield start
    for scp in started:
        scp.stop()


@pytest.fixture(scope="session")
def orthanc_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc for the whole session; tests normally use ``orthanc``, which resets it."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc-session"))
    with server:
        yield server


@pytest.fixture
def orthanc(orthanc_session: Orthanc) -> Orthanc:
    """The session's Orthanc, emptied and with its initial modalities, for this test."""
    orthanc_session.reset()
    return orthanc_session


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """Factory starting dedicated Orthanc instances (``Orthanc`` kwargs); stopped afterwards."""
    started: list[Orthanc] = []
    numbers = itertools.count(1)

    def start(**kwargs: Any) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc{next(numbers)}", **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="session")
def series_cache(tmp_path_factory: pytest.TempPathFactory) -> SeriesCache:
    """Session-wide cache of generated series (generation of big series costs time)."""
    return SeriesCache(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="session")
def ct_series(series_cache: SeriesCache) -> GeneratedSeries:
    """Ten 512x512 CT instances (~0.5 MB each), shared by the session: do not modify."""
    return series_cache.get("ct", 10, seed=1)


@pytest.fixture(scope="session")
def mr_series(series_cache: SeriesCache) -> GeneratedSeries:
    """Ten 256x256 MR instances, shared by the session: do not modify."""
    return series_cache.get("mr", 10, seed=2)


@pytest.fixture(scope="session")
def tiny_series(series_cache: SeriesCache) -> GeneratedSeries:
    """Twenty 64x64 instances (~9 KB each), shared by the session: do not modify."""
    return series_cache.get("tiny", 20, seed=3)


@pytest.fixture
def make_series(tmp_path: Path) -> Callable[..., GeneratedSeries]:
    """Factory ``make_series(kind="tiny", count=10, **kwargs)`` writing into tmp_path."""
    numbers = itertools.count(1)

    def make(kind: str = "tiny", count: int = 10, **kwargs: Any) -> GeneratedSeries:
        return generate_series(tmp_path / f"series{next(numbers)}", kind, count, **kwargs)

    return make


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA with server and client certificates for 127.0.0.1 (see mercure.testing.pki)."""
    from mercure.testing.pki import make_test_pki

    return make_test_pki(tmp_path_factory.mktemp("pki"))
