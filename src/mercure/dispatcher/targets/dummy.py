"""The ``dummy`` target: accepts every instance and keeps none (as mercure's dummy target).

For trying rules: a rule routing to it produces tasks that end in ``success/`` without
anything leaving the host.
"""

from __future__ import annotations

from mercure.core.config.models import DummyTarget
from mercure.dispatcher.targets.base import Confirm, SendJob, SendResult, TargetPlugin, TestSteps


class DummyPlugin(TargetPlugin):
    """Confirms every instance without sending it anywhere."""

    def __init__(self, name: str, config: DummyTarget) -> None:
        super().__init__(name)
        self.config = config

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Confirm each pending instance (0 bytes sent): the task is complete for this target."""
        for path in job.files:
            confirm(path, 0)
        return SendResult()

    async def test(self, steps: TestSteps) -> str:
        """Nothing to reach: one step saying so."""
        steps.ok("accept", "the dummy target accepts and discards every task")
        return "the dummy target discards what it is sent"
