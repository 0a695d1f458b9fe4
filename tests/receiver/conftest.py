"""Fixtures for receiver tests: real `mercure receiver` processes on free ports."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mercure.testing.receiver import RunningReceiver, receiver_config, start_receiver


@pytest.fixture
def receiver_factory(tmp_path: Path) -> Iterator[Callable[..., RunningReceiver]]:
    """Start receivers with listener and receiver settings; all are killed afterwards."""
    started: list[RunningReceiver] = []

    def make(
        *, listener: dict[str, Any] | None = None, receiver: dict[str, Any] | None = None
    ) -> RunningReceiver:
        config = receiver_config(tmp_path / "data", listener=listener, receiver=receiver)
        running = start_receiver(config, tmp_path / f"mercure-{len(started)}.yaml")
        started.append(running)
        return running

    yield make
    for running in started:
        if running.process is not None and running.process.poll() is None:
            running.process.send_signal(signal.SIGKILL)
            running.process.wait()


@pytest.fixture
def receiver(receiver_factory: Callable[..., RunningReceiver]) -> RunningReceiver:
    """A receiver with default settings."""
    return receiver_factory()
