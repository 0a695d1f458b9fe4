"""Fixtures of the processor tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from processor_harness import MODULE_IMAGE, Processor

from mercure.testing.podman import PodmanService, podman_available


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[Processor]:
    """An unstarted processor harness; stopped at the end of the test."""
    harness = Processor(tmp_path)
    yield harness
    harness.stop()


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    """Podman's Docker API for the session, with the test module image built locally."""
    if not podman_available():
        pytest.skip("podman, runc and busybox-static are needed (scripts/install.sh --test)")
    folder = tmp_path_factory.mktemp("podman")
    with PodmanService(folder) as service:
        script = (Path(__file__).with_name("modules") / "behave.sh").read_text()
        service.build_module_image(MODULE_IMAGE, script, folder / "image")
        yield service
