"""One object of the configuration given on its own, as JSON on standard input.

``mercure test-target NAME --definition -`` and ``mercure notify-test NAME --definition -``
test an edited target or channel before it is saved (the web interface's *Test*). The
definition comes on standard input, never as a file or an argument (it holds secrets, and
arguments are visible to everyone on the host), bounded in size, and is checked by the same
models as ``check-config``, with errors by key path that never quote a value.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from pydantic import TypeAdapter, ValidationError

from mercure.core.config.loader import format_path
from mercure.core.errors import MercureError

MAX_DEFINITION = 1 << 20
"""Bytes of a definition read from standard input, at most."""


def read_definition(stream: TextIO | None = None) -> Any:
    """The JSON document on ``stream`` (standard input); MercureError saying what is wrong."""
    text = (stream or sys.stdin).read(MAX_DEFINITION + 1)
    if len(text) > MAX_DEFINITION:
        raise MercureError(f"the definition on standard input is over {MAX_DEFINITION} bytes")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MercureError(
            f"the definition on standard input is not JSON: {exc.msg} at line {exc.lineno}"
        ) from None


def validate_definition(document: Any, model: Any, what: str) -> Any:
    """``document`` validated as ``model`` (a discriminated union of types); MercureError
    listing each problem at its key path, without the values (they may be secrets)."""
    try:
        return TypeAdapter(model).validate_python(document)
    except ValidationError as exc:
        tag = document.get("type") if isinstance(document, dict) else None
        issues = "; ".join(
            f"{format_path(_without_tag(error['loc'], tag)) or 'definition'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise MercureError(f"invalid definition of {what}: {issues}") from None


def _without_tag(loc: tuple[str | int, ...], tag: object) -> tuple[str | int, ...]:
    """A pydantic location without the union's tag (``('dicom', 'port')`` is ``port``)."""
    return loc[1:] if loc and loc[0] == tag else loc
