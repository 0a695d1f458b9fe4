"""A running service's view of its configuration file: reloaded when it changes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mercure.core.config.loader import LoadedConfig, load_config

log = logging.getLogger(__name__)


class ConfigSource:
    """Holds the current configuration and notices when the file changed.

    A service calls :meth:`poll` between units of work. An invalid new file is reported once and
    the service keeps running on the last good configuration. A new file that is valid but for
    rules that no longer compile is loaded: each such rule keeps its previous version (logged).
    """

    def __init__(self, path: Path | str, *, current: LoadedConfig | None = None) -> None:
        self.path = Path(path)
        self._signature = self._stat()
        self.current: LoadedConfig = current or load_config(self.path)
        report_rule_errors(self.current)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        """Whether the file on disk differs from the one last loaded (or last rejected)."""
        return self._stat() != self._signature

    def poll(self) -> LoadedConfig | None:
        """Reload if the file changed; the new configuration, or None if unchanged or invalid.

        Raises nothing: an invalid file is logged and the old configuration stays.
        """
        signature = self._stat()
        if signature == self._signature:
            return None
        self._signature = signature
        from mercure.core.errors import ConfigError

        try:
            self.current = load_config(self.path, previous=self.current)
        except ConfigError as exc:
            log.error("configuration change rejected, keeping the previous one: %s", exc)
            return None
        log.info("configuration reloaded from %s", self.path)
        report_rule_errors(self.current)
        return self.current


def report_rule_errors(loaded: LoadedConfig) -> None:
    """Log each rule that does not compile, and what runs instead (see ``rule_errors``)."""
    for name, reason in loaded.rule_errors.items():
        log.error("rule %s does not compile: %s", name, reason)
