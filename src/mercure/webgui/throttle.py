"""Sign-in throttling: repeated failures for a user name, or from an address, must wait.

After :attr:`LoginThrottle.free_attempts` failures in a row, each further attempt must wait a
delay that doubles with every failure (``base_delay``, capped at ``max_delay``). The counts are
kept per user name and per client address, in memory, so that guessing many passwords for one
user from many addresses, or many users from one address, is slowed alike. A success clears
the user name's count (not the address's: one valid account must not reset an address that
is guessing others). An entry is forgotten once ``forget_after`` passed since its last
failure, and the table is bounded; a restart clears it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Counts failed sign-ins and says how long the next attempt must wait."""

    def __init__(
        self,
        *,
        free_attempts: int = 5,
        base_delay: float = 15.0,
        max_delay: float = 900.0,
        forget_after: float = 3600.0,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    @staticmethod
    def _keys(user: str, address: str) -> tuple[str, str]:
        return f"user:{user.strip().casefold()}", f"address:{address}"

    def _delay(self, failures: _Failures | None, now: float) -> float:
        if failures is None or failures.count < self.free_attempts:
            return 0.0
        if now - failures.last >= self.forget_after:
            return 0.0
        excess = failures.count - self.free_attempts
        delay = min(self.max_delay, self.base_delay * 2 ** min(excess, 32))
        return max(0.0, failures.last + delay - now)

    def wait_time(self, user: str, address: str) -> float:
        """Seconds until an attempt for ``user`` from ``address`` is allowed (0: now)."""
        now = self.clock()
        return max(self._delay(self._entries.get(key), now) for key in self._keys(user, address))

    def failed(self, user: str, address: str) -> None:
        """Count a failed attempt for the user name and for the address."""
        now = self.clock()
        for key in self._keys(user, address):
            entry = self._entries.pop(key, None)
            if entry is None or now - entry.last >= self.forget_after:
                entry = _Failures(0, now)
            entry.count += 1
            entry.last = now
            self._entries[key] = entry  # most recent last
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def succeeded(self, user: str) -> None:
        """A successful sign-in clears the user name's count."""
        self._entries.pop(self._keys(user, "")[0], None)
