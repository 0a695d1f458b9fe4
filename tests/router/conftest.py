"""Fixtures of the router tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from router_harness import BASE_CONFIG, FakeClock, Harness

from mercure.core.config import load_config
from mercure.core.datafolder import DataFolder
from mercure.core.events import EventClient, Outbox
from mercure.router.router import Router
from mercure.router.simulate import IncomingWriter


@pytest.fixture
def make_router(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Factory: ``make_router(extra_yaml)`` -> a started :class:`Harness` (no inotify)."""
    outboxes: list[Outbox] = []

    def make(extra: str = "", *, start: bool = True) -> Harness:
        config_path = tmp_path / "mercure.yaml"
        config_path.write_text(BASE_CONFIG + extra)
        loaded = load_config(config_path)
        data = DataFolder(loaded.config.data_dir)
        data.ensure()
        outbox = Outbox(data.outbox_dir, f"router@test{len(outboxes)}")
        outboxes.append(outbox)
        clock = FakeClock()
        router = Router(data, loaded, EventClient(outbox, "router", "test"), clock=clock)
        harness = Harness(
            root=tmp_path,
            config_path=config_path,
            loaded=loaded,
            data=data,
            router=router,
            clock=clock,
            writer=IncomingWriter(loaded.config.data_dir),
            outbox=outbox,
            _numbers=itertools.count(len(outboxes) * 1000 + 1),
        )
        if start:
            router.start()
        return harness

    yield make
    for outbox in outboxes:
        outbox.close()
