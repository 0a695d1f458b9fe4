"""What the logs page reads: the services' log files in the data folder (mercure.core.logs).

Everything here reads files, so the page calls it in a worker thread. A service is chosen by
name from the files that exist and the services this build has; the path always comes from
:func:`mercure.core.logs.log_files`, never from the request, so no request can name another
file. Reads are bounded: the last lines read at most :data:`TAIL_BYTES` of a file, a live
tail step at most :data:`STEP_BYTES`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mercure.core.config.models import MercureConfig
from mercure.core.installed import installed_services
from mercure.core.logs import LOG_FOLDER, LogLine, LogPosition, log_files, read_new, tail

LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}
"""The level filter: the choice on the page and the least level it shows."""
DEFAULT_LEVEL = "info"
DEFAULT_LINES = 200
MAX_LINES = 2000
MAX_FILTER = 200
"""Longest text filter accepted (characters)."""
TAIL_BYTES = 4 << 20
"""The last lines (and the text filter) read at most this much of the end of a file."""
STEP_BYTES = 256 << 10
"""A live tail step reads at most this much; the rest comes with the next steps."""
SCAN_RECORDS = 100_000
"""With a text filter, the records searched for matches (within :data:`TAIL_BYTES`)."""


@dataclass(frozen=True)
class LogSource:
    """A service whose log the page offers: its file, if it has one here."""

    name: str
    path: Path | None
    size: int = 0
    modified: datetime | None = None


def log_sources(config: MercureConfig) -> list[LogSource]:
    """The supervisor, every installed service and every other log file found (a named
    instance such as ``router@host2``), in that order."""
    files = log_files(config.data_dir)
    names = ["supervisor", *installed_services()]
    names += [name for name in files if name not in names]
    sources = []
    for name in names:
        path = files.get(name)
        if path is None:
            sources.append(LogSource(name, None))
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            sources.append(LogSource(name, None))
            continue
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        sources.append(LogSource(name, path, stat.st_size, modified))
    return sources


def log_folder(config: MercureConfig) -> Path:
    """Where the services write their log files."""
    return Path(config.data_dir) / LOG_FOLDER


def _matches(record: LogLine, text: str) -> bool:
    return not text or text.casefold() in record.text.casefold()


@dataclass(frozen=True)
class LogView:
    """The last records of a file, and where the live tail goes on from."""

    records: list[LogLine]
    position: LogPosition


def last_records(path: Path, lines: int, level: str, text: str = "") -> LogView:
    """The last ``lines`` records at ``level`` or above containing ``text`` (any case).

    The position is taken first and the records are read up to it, so a live tail from the
    position shows every record once.
    """
    position = LogPosition.end_of(path)
    if not text:
        records = tail(path, lines, LEVELS[level], max_read=TAIL_BYTES, end=position.offset)
        return LogView(records, position)
    scanned = tail(path, SCAN_RECORDS, LEVELS[level], max_read=TAIL_BYTES, end=position.offset)
    found = [record for record in scanned if _matches(record, text)]
    return LogView(found[-lines:], position)


@dataclass(frozen=True)
class TailStep:
    """What a live tail step found: new records, the next position, and how far behind."""

    records: list[LogLine]
    position: LogPosition
    behind: int
    """Bytes written but not read yet (more than one step's worth: the tail falls behind)."""


def tail_step(path: Path, position: LogPosition, level: str, text: str = "") -> TailStep:
    """The records written since ``position`` (across a rotation), bounded per step."""
    records, position = read_new(path, position, LEVELS[level], max_read=STEP_BYTES)
    try:
        stat = os.stat(path)
        behind = stat.st_size - position.offset if stat.st_ino == position.inode else 0
    except FileNotFoundError:
        behind = 0
    return TailStep([r for r in records if _matches(r, text)], position, max(0, behind))
