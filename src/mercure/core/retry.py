"""The retry policy as a value: attempts, base delay and cap of a doubling backoff, and jitter.

Shared by the dispatcher (targets) and the notifier (notification channels).

Jitter matters when a target comes back: every task that failed while it was down would
otherwise retry at the same instant (the same doubling from about the same failure time, and
all of them at the cap after a long outage). Each delay is drawn evenly from
``[(1 - jitter) x d, d]`` for the capped delay ``d`` ("equal jitter" at 0.5, "full jitter" at
1), so it never exceeds the cap the administrator configured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mercure.core.config.models import DispatchConfig


@dataclass(frozen=True)
class RetryPolicy:
    """How often something is tried, and how long to wait between tries."""

    attempts: int
    base_delay: float
    max_delay: float
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    """Source of the jitter; tests pass a seeded one."""

    @classmethod
    def from_config(cls, config: DispatchConfig, rng: random.Random | None = None) -> RetryPolicy:
        """The policy of the ``dispatch`` configuration section."""
        return cls(
            config.retry_attempts,
            config.retry_base_delay,
            config.retry_max_delay,
            config.retry_jitter,
            rng or random.Random(),
        )

    def capped_delay(self, failed_attempts: int) -> float:
        """The delay without jitter after ``failed_attempts`` (>= 1): base, 2 x base, ... cap."""
        exponent = min(max(failed_attempts - 1, 0), 60)
        return float(min(self.base_delay * (2**exponent), self.max_delay))

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures: the capped delay, less jitter."""
        capped = self.capped_delay(failed_attempts)
        # random() is in [0, 1): the delay is in ((1 - jitter) x capped, capped].
        return capped * (1.0 - self.jitter * self.rng.random())

    def exhausted(self, failed_attempts: int) -> bool:
        """Whether no attempt is left after ``failed_attempts`` failures."""
        return failed_attempts >= self.attempts
