"""Two dispatchers on one data folder never send the same task."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from dispatch_site import FastDispatcher, Site

from mercure.core.config import ConfigSource
from mercure.core.datafolder import Stage
from mercure.testing.series import generate_series


async def _two_dispatchers(site: Site, task_ids: list[str]) -> None:
    services = [FastDispatcher(ConfigSource(site.config_path), instance=n) for n in ("a", "b")]
    for service in services:
        await service.setup()
    serving = [asyncio.create_task(service.serve()) for service in services]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while any(site.where(t) == Stage.OUTGOING for t in task_ids):
        assert loop.time() < deadline, "tasks were not delivered within 30 s"
        await asyncio.sleep(0.02)  # the event loop must run the services while we poll
    for service, task in zip(services, serving, strict=True):
        service.stopping.set()
        await task
        await service.teardown()
        service.outbox.close()


def test_two_dispatchers_send_each_task_once(site: Site, tmp_path: Path) -> None:
    """With two dispatchers racing for 20 tasks, every task is begun exactly once."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    site.configure({"archive": {"type": "folder", "folder": str(tmp_path / "archive")}})
    task_ids = [site.add_task(series.paths, ["archive"]) for _ in range(20)]
    asyncio.run(_two_dispatchers(site, task_ids))
    assert all(site.where(t) == Stage.SUCCESS for t in task_ids)
    begun = Counter(e["task_id"] for e in site.events() if e["kind"] == "dispatch.begin")
    assert begun == Counter(dict.fromkeys(task_ids, 1))
