"""Logging set-up for the CLI and the services: text or JSON, with context from contextvars.

Context (service, task_id, series_uid) is set with :func:`log_context` and appears on every
record logged inside it, in whatever thread or task the context was copied to. Patient data
never goes above DEBUG; that is the callers' rule, not something a formatter could enforce.
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
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
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
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure_logging(
    level: str = "INFO", fmt: str = "text", *, stream: TextIO | None = None
) -> None:
    """Install one handler on the root logger (replacing earlier ones from this function)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.set_name("mercure")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "mercure"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
