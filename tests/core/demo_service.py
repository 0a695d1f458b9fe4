"""A small worker service for the frame's tests (run as a script in a child process).

Each unit of work appends ``begin N`` and, half a unit later, ``end N <trigger>`` to a log,
where <trigger> is the configured router.series_complete_trigger: so a test sees config reloads
between units and whether a stop signal let the current unit finish.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mercure.core.config import ConfigSource
from mercure.core.service import Service


class DemoService(Service):
    """Works in units of ``UNIT`` seconds, logging each."""

    name = "demo"
    idle_wait = 0.05
    UNIT = float(os.environ.get("DEMO_UNIT", "0.3"))

    def __init__(self, source: ConfigSource, log_path: Path) -> None:
        super().__init__(source)
        self.log_path = log_path
        self.count = 0

    def _log(self, line: str) -> None:
        with self.log_path.open("a") as handle:
            handle.write(line + "\n")

    async def step(self) -> bool:
        self.count += 1
        self._log(f"begin {self.count}")
        await asyncio.sleep(self.UNIT / 2)
        await asyncio.sleep(self.UNIT / 2)
        self._log(f"end {self.count} {self.config.router.series_complete_trigger:g}")
        return True


if __name__ == "__main__":
    sys.exit(DemoService(ConfigSource(sys.argv[1]), Path(sys.argv[2])).run())
