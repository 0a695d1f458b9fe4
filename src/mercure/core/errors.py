"""The exception tree of mercure-router.

::

    MercureError                   every error the project raises on purpose
    ├── TransientError             may succeed when retried later (target down, disk busy)
    └── PermanentError             retrying cannot help; fail fast with the reason
        ├── ConfigError            the configuration file is invalid (carries every issue)
        ├── DataFolderError        the data folder is unusable (missing, several filesystems)
        ├── TaskError              a task folder or its task.json is broken
        └── ClaimError             a claim could not be taken or was lost

Library code raises these; they are caught at three boundaries only: per task, per DICOM
message and per HTTP request.
"""

from __future__ import annotations


class MercureError(Exception):
    """Base class of every error mercure-router raises on purpose."""


class TransientError(MercureError):
    """An error that may go away when the same work is retried later."""


class PermanentError(MercureError):
    """An error that a retry cannot fix; the work fails with this reason."""


class ConfigError(PermanentError):
    """The configuration is invalid. ``issues`` lists each problem with its key path."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"invalid configuration {source}:\n{lines}")


class ConfigIssue:
    """One problem in a configuration file: where (a key path) and what."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __repr__(self) -> str:
        return f"ConfigIssue({self.path!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigIssue) and (self.path, self.message) == (
            other.path,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message))


class DataFolderError(PermanentError):
    """The data folder cannot be used as the architecture requires."""


class TaskError(PermanentError):
    """A task folder or its task.json is missing or broken."""


class ClaimError(MercureError):
    """A claim on a task could not be taken (someone else holds it) or was lost."""
