"""The bookkeeper's API key: where services and clients find it, and how it is first made.

Every request to the bookkeeper (events, searches, metrics) carries the key as a bearer token.
The key in force is ``bookkeeper.api_key`` of ``mercure.yaml`` when set (best as ``${ENV}``);
otherwise the key file ``data_dir/.secrets/bookkeeper.key``, which ``mercure init`` writes. A
service that finds no key file (an installation older than the key, a test that never ran
``init``) makes it: the key is written to a private temporary file and hard-linked to the final
name, and ``link`` fails when another process was first, so however many services start at
once, exactly one key is ever made and all of them use it.

Key files are re-read when they are replaced (their identity is compared at each use, a
``stat``), so writing a new key file atomically rotates the key without restarting anything.
Every key read from them is registered with :mod:`mercure.core.masking`, like the configured
key, so it is scrubbed from logs, events and answers.
During a rotation the bookkeeper also accepts the previous keys: ``bookkeeper.previous_api_keys``
and the lines of ``data_dir/.secrets/bookkeeper.previous-keys``.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mercure.core.atomic import TEMP_PREFIX, atomic_write_text, fsync_dir
from mercure.core.config.models import BookkeeperConfig, MercureConfig
from mercure.core.errors import PermanentError
from mercure.core.masking import register_secret

log = logging.getLogger(__name__)

SECRETS_DIR = ".secrets"
KEY_FILE = "bookkeeper.key"
PREVIOUS_KEYS_FILE = "bookkeeper.previous-keys"
MIN_KEY_LENGTH = 16
"""Shorter keys in a key file are refused: they would be guessable."""


class ApiKeyError(PermanentError):
    """The key file cannot be made or read, or holds no usable key."""


def key_path(data_dir: Path) -> Path:
    """Where the data folder keeps the bookkeeper key."""
    return Path(data_dir) / SECRETS_DIR / KEY_FILE


def previous_keys_path(data_dir: Path) -> Path:
    """Where the data folder keeps keys still accepted during a rotation (one per line)."""
    return Path(data_dir) / SECRETS_DIR / PREVIOUS_KEYS_FILE


def new_key() -> str:
    """A fresh random key: 256 bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def _secrets_folder(data_dir: Path) -> Path:
    folder = Path(data_dir) / SECRETS_DIR
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ApiKeyError(f"cannot create {folder} for the API key: {exc.strerror}") from None
    return folder


def ensure_key_file(data_dir: Path) -> bool:
    """Make the key file if there is none; True when this call made it.

    Safe against any number of processes doing the same at once: exactly one key is made.
    """
    return ensure_secret_file(key_path(data_dir), "the bookkeeper key")


def ensure_secret_file(path: Path, what: str) -> bool:
    """Make ``path`` (in ``data_dir/.secrets/``) holding a fresh random key, if it is missing.

    True when this call made it. The file is private (0600) and, however many processes race,
    exactly one key is ever written: each writes a temporary file and hard-links it to the
    final name, and ``link``, unlike ``rename``, never replaces.
    """
    if path.exists():
        return False
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ApiKeyError(f"cannot create {folder} for {what}: {exc.strerror}") from None
    temp = folder / f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (new_key() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(temp)
        fsync_dir(folder)
    except OSError as exc:
        raise ApiKeyError(f"cannot write {what} {path}: {exc.strerror}") from None
    log.info("created %s file %s", what, path)
    return True


def read_secret_file(path: Path, what: str) -> str:
    """The key in a secret file made by :func:`ensure_secret_file` (registered as a secret)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ApiKeyError(f"cannot read {what} {path}: {exc.strerror}") from None
    key = _check_key(text, str(path))
    register_secret(key)
    return key


def write_key_file(data_dir: Path, key: str) -> None:
    """Replace the key file atomically (a rotation); readers see the old key or the new one."""
    _check_key(key, "the new key")
    _secrets_folder(data_dir)
    atomic_write_text(key_path(data_dir), key + "\n", mode=0o600)


def write_previous_keys(data_dir: Path, keys: list[str]) -> None:
    """Replace the list of previous keys the bookkeeper still accepts."""
    _secrets_folder(data_dir)
    text = "".join(f"{key}\n" for key in keys)
    atomic_write_text(previous_keys_path(data_dir), text, mode=0o600)


def read_previous_keys(data_dir: Path) -> list[str]:
    """The previous keys listed in the data folder (empty when there is no list)."""
    return list(_WatchedFile(previous_keys_path(data_dir)).lines() or ())


def _check_key(key: str, where: str) -> str:
    if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key) or not key.isprintable():
        raise ApiKeyError(
            f"{where} is not a usable key: it needs at least {MIN_KEY_LENGTH} printable "
            "characters without spaces"
        )
    return key


@dataclass(frozen=True)
class _Identity:
    inode: int
    mtime_ns: int
    size: int


class _WatchedFile:
    """The non-empty lines of a small file, re-read whenever the file is replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: _Identity | None = None
        self._lines: tuple[str, ...] = ()

    def lines(self) -> tuple[str, ...] | None:
        """The lines (stripped, empty ones left out), or None if there is no file."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self._identity = None
            return None
        except OSError as exc:
            raise ApiKeyError(f"cannot read {self.path}: {exc.strerror}") from None
        identity = _Identity(status.st_ino, status.st_mtime_ns, status.st_size)
        if identity != self._identity:
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            except (OSError, UnicodeDecodeError) as exc:
                raise ApiKeyError(f"cannot read {self.path}: {exc}") from None
            self._lines = tuple(line.strip() for line in text.splitlines() if line.strip())
            self._identity = identity
            for line in self._lines:
                # Keys read here are secrets of this process: never in a log, event or answer.
                register_secret(line)
        return self._lines


class ApiKeys:
    """The key in force for one configuration, and every key the bookkeeper accepts."""

    def __init__(self, bookkeeper: BookkeeperConfig, data_dir: Path) -> None:
        configured = bookkeeper.api_key.get_secret_value() if bookkeeper.api_key else ""
        self.configured = configured or None
        """``bookkeeper.api_key`` when set; then the key file is not used."""
        self._previous = tuple(
            value for key in bookkeeper.previous_api_keys if (value := key.get_secret_value())
        )
        self.data_dir = Path(data_dir)
        self._key_file = _WatchedFile(key_path(self.data_dir))
        self._previous_file = _WatchedFile(previous_keys_path(self.data_dir))

    @classmethod
    def from_config(cls, config: MercureConfig) -> ApiKeys:
        """The keys of a whole configuration."""
        return cls(config.bookkeeper, config.data_dir)

    @property
    def source(self) -> str:
        """Where the key in force comes from, for messages (never the key itself)."""
        return "bookkeeper.api_key" if self.configured else str(self._key_file.path)

    def current(self) -> str:
        """The key to send; makes the key file if it is needed and missing."""
        if self.configured:
            return self.configured
        lines = self._key_file.lines()
        if lines is None:
            ensure_key_file(self.data_dir)
            lines = self._key_file.lines()
        if not lines:
            raise ApiKeyError(f"{self._key_file.path} holds no key")
        return _check_key(lines[0], str(self._key_file.path))

    def accepted(self) -> tuple[str, ...]:
        """The current key and the previous ones still accepted (for the bookkeeper)."""
        previous = self._previous_file.lines() or ()
        return (self.current(), *self._previous, *previous)
