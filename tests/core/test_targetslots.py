"""Per-target slots shared by processes: a total limit, freed when a holder is killed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from mercure.core.targetslots import busy_slots, target_slot
from mercure.testing.wait import wait_until

HOLDER = """
import asyncio, sys
from pathlib import Path
from mercure.core.targetslots import target_slot

async def main():
    async with target_slot(Path(sys.argv[1]), "pacs", 2):
        print("held", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_limit_holds_across_processes_and_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    """Two slots: another process holds one, we take the other, the third waits for a kill."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        async def scenario() -> None:
            async with target_slot(tmp_path, "pacs", 2):
                assert busy_slots(tmp_path, "pacs", 2) == 2
                third = asyncio.create_task(_take(tmp_path))
                await asyncio.sleep(0.2)
                assert not third.done()  # both slots are taken: it waits
                holder.kill()
                await asyncio.wait_for(third, 30)

        asyncio.run(scenario())
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    wait_until(lambda: busy_slots(tmp_path, "pacs", 2) == 0)


async def _take(run_dir: Path) -> None:
    async with target_slot(run_dir, "pacs", 2):
        pass
