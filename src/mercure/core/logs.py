"""Logging set-up for the CLI and the services: text or JSON, with context from contextvars.

Context (service, task_id, series_uid) is set with :func:`log_context` and appears on every
record logged inside it, in whatever thread or task the context was copied to. Patient data
never goes above DEBUG; that is the callers' rule, not something a formatter could enforce.
Secrets are another matter: every handler has a filter that scrubs message, arguments and
traceback of each record (:mod:`mercure.core.masking`), so that a secret echoed by a peer or
quoted by an exception never reaches a log file. The HTTP client libraries log every request
with its URL at INFO; their loggers are kept at WARNING.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

from mercure.core.masking import scrub

QUIET_LOGGERS = ("httpx", "httpcore")
"""Loggers held at WARNING whatever the level: they log each HTTP request at INFO or below."""

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


def configure_logging(
    level: str = "INFO", fmt: str = "text", *, stream: TextIO | None = None
) -> None:
    """Install one handler on the root logger (replacing earlier ones from this function).

    Every handler of the root logger, this one and any other, gets the :class:`ScrubFilter`.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.set_name("mercure")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "mercure"]:
        root.removeHandler(old)
    root.addHandler(handler)
    for each in root.handlers:
        if not any(isinstance(f, ScrubFilter) for f in each.filters):
            each.addFilter(ScrubFilter())
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
