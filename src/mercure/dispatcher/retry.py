"""The retry policy as a value: attempts, base delay and cap of a doubling backoff."""

from __future__ import annotations

from dataclasses import dataclass

from mercure.core.config.models import DispatchConfig


@dataclass(frozen=True)
class RetryPolicy:
    """How often a target is tried, and how long to wait between tries."""

    attempts: int
    base_delay: float
    max_delay: float

    @classmethod
    def from_config(cls, config: DispatchConfig) -> RetryPolicy:
        """The policy of the ``dispatch`` configuration section."""
        return cls(config.retry_attempts, config.retry_base_delay, config.retry_max_delay)

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` (>= 1) failures: base, 2 x base, ... cap."""
        exponent = min(max(failed_attempts - 1, 0), 60)
        return float(min(self.base_delay * (2**exponent), self.max_delay))

    def exhausted(self, failed_attempts: int) -> bool:
        """Whether no attempt is left after ``failed_attempts`` failures."""
        return failed_attempts >= self.attempts
