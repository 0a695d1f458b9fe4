"""The plug-in class of the ``example`` target type."""

from __future__ import annotations

import asyncio
import shutil

from mercure.dispatcher.errors import DeliveryError
from mercure.dispatcher.targets import Confirm, SendJob, SendResult, TargetPlugin, TestSteps
from mercure_target_example import ExampleTarget


class ExamplePlugin(TargetPlugin):
    """Copies every pending instance to ``<folder>/<label>-<file name>``."""

    def __init__(self, name: str, config: ExampleTarget) -> None:
        super().__init__(name)
        self.config = config

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Copy, and confirm each copied instance."""
        if not self.config.folder.is_dir():
            raise DeliveryError(f"{self.config.folder} is not a folder")  # retried
        for path in job.files:
            target = self.config.folder / f"{self.config.label}-{path.name}"
            await asyncio.to_thread(shutil.copyfile, path, target)
            confirm(path, path.stat().st_size)
        return SendResult()

    async def test(self, steps: TestSteps) -> str:
        """The folder is there."""
        if not self.config.folder.is_dir():
            steps.fail("folder", DeliveryError(f"{self.config.folder} is not a folder"))
        steps.ok("folder", str(self.config.folder))
        return f"example target writes into {self.config.folder}"
