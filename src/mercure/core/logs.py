"""Logging set-up for the CLI and the services: text or JSON, with context from contextvars.

Context (service, task_id, series_uid) is set with :func:`log_context` and appears on every
record logged inside it, in whatever thread or task the context was copied to. Patient data
never goes above DEBUG; that is the callers' rule, not something a formatter could enforce.
Secrets are another matter: every handler has a filter that scrubs message, arguments and
traceback of each record (:mod:`mercure.core.masking`), so that a secret echoed by a peer or
quoted by an exception never reaches a log file. The HTTP client libraries log every request
with its URL at INFO; their loggers are kept at WARNING.

Services also write their log to ``data_dir/logs/<service>.log`` (``logging.files``), rotated
by size; each file has exactly one writer, so rotation needs no lock between processes.
:func:`tail` and :func:`read_new` read them back for ``mercure logs`` and the web interface.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from mercure.core.masking import scrub

QUIET_LOGGERS = ("httpx", "httpcore", "apprise")
"""Loggers held at WARNING whatever the level: they log each HTTP request (apprise: each
service URL, credentials included) at INFO or below."""

service_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("service", default=None)
task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)
series_uid_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "series_uid", default=None
)
_CONTEXT = {"service": service_var, "task_id": task_id_var, "series_uid": series_uid_var}


@contextlib.contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Add ``service``, ``task_id`` or ``series_uid`` to every record logged inside the block."""
    tokens = [(_CONTEXT[key], _CONTEXT[key].set(value)) for key, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, var in _CONTEXT.items():
            if not hasattr(record, key):
                setattr(record, key, var.get())
        return True


class ScrubFilter(logging.Filter):
    """Replaces secrets in a record's message, arguments, traceback and stack (see masking).

    The message is formatted here once and stored without arguments, so the formatter does not
    format it again; the traceback is formatted into ``exc_text``, which the formatters use.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A broken log call: leave the arguments for logging's own error report.
            record.msg = scrub(str(record.msg))
        else:
            record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else ""


class TextFormatter(logging.Formatter):
    """``time level service [task=… series=…] logger: message`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        context = " ".join(
            f"{key}={getattr(record, key)}"
            for key in ("task_id", "series_uid")
            if getattr(record, key, None)
        )
        service = getattr(record, "service", None) or "-"
        text = f"{stamp} {record.levelname:<7} {service} {record.name}: {record.getMessage()}"
        if context:
            text += f" [{context}]"
        exception = _exception_text(self, record)
        if exception:
            text += "\n" + exception
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT:
            value = getattr(record, key, None)
            if value:
                document[key] = value
        exception = _exception_text(self, record)
        if exception:
            document["exception"] = exception
        return json.dumps(document, ensure_ascii=False)


LOG_FOLDER = "logs"
"""Folder of the services' log files, below the data folder."""

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LogFile:
    """Where one service process writes its log, and how it rotates."""

    path: Path
    max_bytes: int = 10 << 20
    backups: int = 5


def log_file_for(data_dir: Path, service: str, instance: str | None = None) -> Path:
    """``data_dir/logs/<service>.log``, or ``<service>@<instance>.log`` for a named instance."""
    name = service if not instance else f"{service}@{instance}"
    return Path(data_dir) / LOG_FOLDER / (re.sub(r"[^A-Za-z0-9._@-]", "_", name) + ".log")


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates by size; creates each file readable by owner and group only (0640)."""

    def _open(self) -> io.TextIOWrapper:
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        return open(descriptor, "a", encoding=self.encoding or "utf-8", errors=self.errors)


def configure_logging(
    level: str = "INFO",
    fmt: str = "text",
    *,
    stream: TextIO | None = None,
    file: LogFile | None = None,
) -> None:
    """Install one handler on the root logger (replacing earlier ones from this function).

    With ``file``, a second handler writes the same records to that file, rotated by size.
    Every handler of the root logger, these and any other, gets the :class:`ScrubFilter`.
    """
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file is not None:
        file.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        handlers.append(
            _PrivateRotatingFileHandler(
                file.path, maxBytes=file.max_bytes, backupCount=file.backups, encoding="utf-8"
            )
        )
    root = logging.getLogger()
    for old in [h for h in root.handlers if (h.get_name() or "").startswith("mercure")]:
        root.removeHandler(old)
        old.close()
    for index, handler in enumerate(handlers):
        handler.setFormatter(formatter)
        handler.addFilter(_ContextFilter())
        handler.set_name("mercure" if index == 0 else "mercure-file")
        root.addHandler(handler)
    for each in root.handlers:
        if not any(isinstance(f, ScrubFilter) for f in each.filters):
            each.addFilter(ScrubFilter())
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class LogLine:
    """One record of a log file: its level (None when unknown) and its text, continuations
    (a traceback) included."""

    level: str | None
    text: str


def log_files(data_dir: Path) -> dict[str, Path]:
    """The current log file of each service process that wrote one, by name (``router``)."""
    folder = Path(data_dir) / LOG_FOLDER
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.glob("*.log")) if path.is_file()}


_TEXT_LEVEL = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL)\b"
)


def _level_of(line: str) -> str | None:
    """The level of a line that starts a record, or None for a continuation line."""
    match = _TEXT_LEVEL.match(line)
    if match:
        return match.group(1)
    if line.startswith("{"):
        try:
            level = json.loads(line).get("level")
        except (ValueError, AttributeError):
            return None
        return level if level in LEVELS else None
    return None


def _records(lines: list[str]) -> list[LogLine]:
    """Group lines into records: a continuation line joins the record above it."""
    records: list[LogLine] = []
    for line in lines:
        level = _level_of(line)
        if level is None and records:
            records[-1] = LogLine(records[-1].level, records[-1].text + "\n" + line)
        else:
            records.append(LogLine(level, line))
    return records


def _at_least(record: LogLine, min_level: str) -> bool:
    if record.level is None:
        return True
    return LEVELS.index(record.level) >= LEVELS.index(min_level)


def tail(
    path: Path,
    limit: int = 200,
    min_level: str = "DEBUG",
    *,
    max_read: int = 4 << 20,
    end: int | None = None,
) -> list[LogLine]:
    """The last ``limit`` records of ``path`` at ``min_level`` or above, oldest first.

    Reads backwards from the end (or from byte ``end``, e.g. a :class:`LogPosition`'s offset,
    so that a live tail from there shows each line once), at most ``max_read`` bytes, so a
    huge file costs no more than a small one; a missing file has no records.
    """
    if min_level not in LEVELS:
        raise ValueError(f"unknown level {min_level!r}; one of {', '.join(LEVELS)}")
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if end is not None:
                size = max(0, min(size, end))
            start, chunk = size, b""
            while start > 0 and size - start < max_read:
                # Each read doubles the window, so re-parsing costs at most twice the bytes.
                step = min(max(64 << 10, size - start), start, max_read - (size - start))
                start -= step
                handle.seek(start)
                chunk = handle.read(step) + chunk
                if chunk.count(b"\n") <= limit:
                    continue
                found = [r for r in _records(_split(chunk, start)) if _at_least(r, min_level)]
                if len(found) > limit:
                    break
    except FileNotFoundError:
        return []
    records = [r for r in _records(_split(chunk, start)) if _at_least(r, min_level)]
    return records[-limit:] if limit else []


def _split(chunk: bytes, start: int) -> list[str]:
    """Lines of ``chunk``; a first line cut by the read window is dropped."""
    lines = chunk.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]
    return lines


@dataclass(frozen=True)
class LogPosition:
    """Where a live tail stands in a log file: which file (inode) and how far."""

    inode: int = 0
    offset: int = 0

    @classmethod
    def end_of(cls, path: Path) -> LogPosition:
        """The end of ``path`` as it is now (nothing there yet: its beginning)."""
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return cls()
        return cls(stat.st_ino, stat.st_size)


def read_new(
    path: Path, position: LogPosition, min_level: str = "DEBUG", *, max_read: int = 1 << 20
) -> tuple[list[LogLine], LogPosition]:
    """Records written to ``path`` since ``position``, and the position to ask from next.

    For a live tail. When the file was rotated (another inode), the rest of the file
    ``position`` was in is read first from ``<name>.1``, where rotation moved it, then the new
    file from its beginning; a file shorter than the offset is read from its beginning. At most
    ``max_read`` bytes are read per call, and only whole lines are consumed.
    """
    rotated = _rest_of_rotated(path, position, min_level, max_read)
    if rotated is not None:
        return rotated
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            offset = position.offset
            if stat.st_ino != position.inode or offset > stat.st_size:
                offset = 0
            handle.seek(offset)
            data = handle.read(max_read)
    except FileNotFoundError:
        # Between a rotation's rename and the new file: keep the place in the old one.
        return [], position
    complete = data[: data.rfind(b"\n") + 1]
    lines = complete.decode("utf-8", errors="replace").splitlines()
    records = [r for r in _records(lines) if _at_least(r, min_level)]
    return records, LogPosition(stat.st_ino, offset + len(complete))


def _rest_of_rotated(
    path: Path, position: LogPosition, min_level: str, max_read: int
) -> tuple[list[LogLine], LogPosition] | None:
    """What ``position``'s file still held when it was rotated to ``<name>.1``, or None when
    there is nothing left there (not rotated, rotated twice since, or read to its end)."""
    if not position.inode:
        return None
    try:
        if os.stat(path).st_ino == position.inode:
            return None
    except FileNotFoundError:
        pass  # rotated, and the new file is not there yet
    try:
        with open(path.with_name(path.name + ".1"), "rb") as handle:
            if os.fstat(handle.fileno()).st_ino != position.inode:
                return None
            handle.seek(position.offset)
            data = handle.read(max_read)
    except FileNotFoundError:
        return None
    complete = data[: data.rfind(b"\n") + 1]
    if not complete:
        return None
    lines = complete.decode("utf-8", errors="replace").splitlines()
    records = [r for r in _records(lines) if _at_least(r, min_level)]
    return records, LogPosition(position.inode, position.offset + len(complete))
