"""Known secrets, and scrubbing them out of everything mercure-router writes or answers.

Secrets travel further than their settings: a target's error answer may echo the credentials it
received, an exception may quote a header, a module may print its token. So every text that
leaves a process (log lines, events, failure reasons in ``task.json`` and ``error.json``, what
the bookkeeper stores) passes :func:`scrub`, which replaces

- every **registered secret** (each ``SecretStr`` of the loaded configuration, the values that
  ``${VAR}`` references give a module's ``environment``, the password of a database URL, the
  bookkeeper key) and its Base64 forms, and the Base64 of ``user:password`` of each Basic login;
- anything shaped like a credential even if unknown here: the value of an ``Authorization:``
  header, ``Bearer <token>``, and ``Basic <base64 of user:password>``

with ``***``. The registry is per process (like the logging configuration it serves): services
register the secrets of the configuration they load, and registered values stay registered
after a reload, since older texts may still hold them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from mercure.core.config.models import MercureConfig

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not masked: they would mask common words and numbers everywhere."""
EXCERPT_LIMIT = 200
"""Characters of a peer's answer quoted in a failure reason, at most (after scrubbing)."""

_TOKEN = r"[A-Za-z0-9._~+/=-]"
_CREDENTIAL = re.compile(
    # The value of an Authorization header, in a header dump, JSON or a repr, scheme included.
    r"(?P<header>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    rf"(?:(?:basic|bearer|digest|token|negotiate|apikey)\s+{_TOKEN}{{4,}}|{_TOKEN}{{8,}})"
    # A bearer token anywhere.
    rf"|(?P<bearer>\bbearer)\s+{_TOKEN}{{8,}}"
    # Basic credentials anywhere: masked only if they decode to ``user:password``, so that the
    # word in "Basic Application Level Confidentiality Profile" stays.
    r"|(?P<basic>\bbasic)\s+(?P<b64>[A-Za-z0-9+/_-]{4,}={0,2})",
    re.IGNORECASE,
)

_CREDENTIAL_WORDS = ("authorization", "bearer", "basic")
"""A text holds a credential shape only if it holds one of these (lower case)."""


def _mask_credential(match: re.Match[str]) -> str:
    if match["header"] is not None:
        return match["header"] + MASK
    if match["bearer"] is not None:
        return f"{match['bearer']} {MASK}"
    if _is_basic_credential(match["b64"]):
        return f"{match['basic']} {MASK}"
    return match[0]


def _is_basic_credential(token: str) -> bool:
    padded = token.rstrip("=") + "=" * (-len(token.rstrip("=")) % 4)
    try:
        decoded = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return ":" in text and text.isprintable()


def _forms(value: str) -> set[str]:
    """How a secret may appear in text: as is, JSON- or URL-escaped, Base64-encoded."""
    raw = value.encode("utf-8")
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        # Padded (replaced first, being longer) and unpadded, as a longer encoded text has it.
        forms |= {encoded, encoded.rstrip("=")}
    return forms


class SecretRegistry:
    """The secrets of one process and the scrubbing of texts and JSON-like data."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()
        """Every form of every secret, longest first (a secret inside another goes after)."""

    def register(self, value: str) -> None:
        """Mask ``value`` (and its escaped and Base64 forms) from now on."""
        if len(value) < MIN_SECRET_LENGTH:
            return
        self._add(_forms(value))

    def register_basic_auth(self, username: str, password: str) -> None:
        """Mask the password and the ``Basic`` credential made of ``username:password``."""
        self.register(password)
        if password:
            self._add(_forms(f"{username}:{password}"))

    def _add(self, forms: Iterable[str]) -> None:
        with self._lock:
            known = set(self._forms) | {form for form in forms if len(form) >= MIN_SECRET_LENGTH}
            # A tuple replaced whole: readers in other threads never see it half-built.
            self._forms = tuple(sorted(known, key=lambda form: (-len(form), form)))

    def clear(self) -> None:
        """Forget every secret (for tests, which share one process)."""
        with self._lock:
            self._forms = ()

    def __len__(self) -> int:
        return len(self._forms)

    def scrub(self, text: str) -> str:
        """``text`` with credentials and every registered secret replaced by ``***``."""
        if len(text) < MIN_SECRET_LENGTH:
            return text  # most strings of an event are short words and numbers
        # The pattern costs ~20 us a line even when nothing matches; its words are found in
        # well under one (this runs for every log line and every string of every event).
        lowered = text.lower()
        if any(word in lowered for word in _CREDENTIAL_WORDS):
            text = _CREDENTIAL.sub(_mask_credential, text)
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def scrub_data(self, value: Any) -> Any:
        """A copy of JSON-like ``value`` (dicts, lists, strings ...) with every string scrubbed."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self.scrub_data(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_data(item) for item in value]
        return value


_registry = SecretRegistry()
"""The process's registry: secrets are a fact of the process, like its logging handlers."""


def registry() -> SecretRegistry:
    """The registry of this process."""
    return _registry


def register_secret(value: str) -> None:
    """Mask ``value`` in every log line, event, reason and bookkeeper record of this process."""
    _registry.register(value)


def scrub(text: str) -> str:
    """``text`` without known secrets and credential-shaped values (see the module docstring)."""
    return _registry.scrub(text)


def scrub_data(value: Any) -> Any:
    """A copy of JSON-like ``value`` with every string passed through :func:`scrub`."""
    return _registry.scrub_data(value)


def excerpt(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """A short, one-line, scrubbed quote of a peer's answer for a failure reason.

    Scrubbed before it is cut, so that a secret at the cut is not left half visible.
    """
    quoted = " ".join(scrub(text).split())
    return quoted if len(quoted) <= limit else quoted[: limit - 1] + "…"


def scrub_file(path: Path) -> bool:
    """Scrub a text file (a module's log) in place, line by line; whether anything changed.

    The file is replaced atomically, and only when a line changed.
    """
    changed = False
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with (
            open(path, encoding="utf-8", errors="surrogateescape", newline="") as source,
            os.fdopen(
                handle, "w", encoding="utf-8", errors="surrogateescape", newline=""
            ) as target,
        ):
            for line in source:
                clean = scrub(line)
                changed = changed or clean != line
                target.write(clean)
        if changed:
            os.replace(temporary, path)
    finally:
        if not changed:
            os.unlink(temporary)
    return changed


def register_config(config: MercureConfig, environment_values: Iterable[str] = ()) -> None:
    """Register the secrets of a loaded configuration.

    ``environment_values`` are the values ``${VAR}`` references gave to modules' ``environment``
    (which is where secrets for modules belong).
    """
    for value in _secret_strings(config):
        _registry.register(value)
    for target in config.targets.values():
        register_model_secrets(target)
    for url in (
        config.bookkeeper.database_url,
        config.scale_out.broker,
        config.scale_out.result_backend,
    ):
        password = urlsplit(url).password if url else None
        if password:
            _registry.register(password)
            _registry.register(unquote(password))
    for value in environment_values:
        _registry.register(value)


def register_model_secrets(model: BaseModel) -> None:
    """Register every ``SecretStr`` of a validated model (a channel, a target of any type, a
    plug-in's included), and the Basic form of its login (``username`` or ``user`` with
    ``password``)."""
    for value in _secret_strings(model):
        if value:
            _registry.register(value)
    username = getattr(model, "username", None) or getattr(model, "user", None)
    password = getattr(model, "password", None)
    if isinstance(username, str) and isinstance(password, SecretStr):
        _registry.register_basic_auth(username, password.get_secret_value())


TARGET_SECRET_KEYS = ("password", "token", "secret_access_key")
"""The keys of a target's definition that hold secrets."""


def register_target_secrets(definition: dict[str, Any]) -> None:
    """Register the secrets of one target's definition (a plain mapping, not yet validated),
    e.g. one given to ``mercure test-target --definition -``."""
    for key in TARGET_SECRET_KEYS:
        value = definition.get(key)
        if isinstance(value, str) and value:
            _registry.register(value)
    username = definition.get("username") or definition.get("user")
    password = definition.get("password")
    if isinstance(username, str) and isinstance(password, str) and password:
        _registry.register_basic_auth(username, password)


CHANNEL_SECRET_KEYS = ("url", "urls", "headers", "password", "hmac_secret")
"""The keys of a notification channel's definition that hold secrets (every string in them)."""

STORED_SECRET = "<secret>"
"""What a form or a ``--definition -`` gives for "the secret stored in the configuration"."""


def register_channel_secrets(definition: dict[str, Any]) -> None:
    """Register the secrets of one notification channel's definition (a plain mapping, not yet
    validated: an error message may quote a value), e.g. one given to ``mercure notify-test
    --definition -``."""
    for key in CHANNEL_SECRET_KEYS:
        for value in _strings(definition.get(key)):
            if value and value != STORED_SECRET:
                _registry.register(value)


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for item in node.values():
            yield from _strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _secret_strings(node: Any) -> Iterable[str]:
    if isinstance(node, SecretStr):
        yield node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secret_strings(getattr(node, name))
    elif isinstance(node, dict):
        for item in node.values():
            yield from _secret_strings(item)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _secret_strings(item)
