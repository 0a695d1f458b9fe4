"""An HTTP client for a DICOMweb server, as the ``dicomweb`` target and source configure it.

Both kinds of configuration carry the same connection settings (``url``, ``auth`` none / basic /
bearer, ``username``, ``password``, ``token``, ``verify_tls``, ``ca_certificate``), so the
dispatcher (STOW-RS) and the retriever (QIDO-RS, WADO-RS) log in and verify alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import httpx
from pydantic import SecretStr


class DicomWebSettings(Protocol):
    """The connection settings a DICOMweb target or source has."""

    @property
    def url(self) -> str: ...
    @property
    def auth(self) -> Literal["none", "basic", "bearer"]: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> SecretStr | None: ...
    @property
    def token(self) -> SecretStr | None: ...
    @property
    def verify_tls(self) -> bool: ...
    @property
    def ca_certificate(self) -> Path | None: ...


def dicomweb_client(settings: DicomWebSettings, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An async client with ``url`` as base, the configured login and TLS verification, asking
    for ``application/dicom+json`` answers."""
    verify: ssl.SSLContext | bool = settings.verify_tls
    if settings.ca_certificate and settings.verify_tls:
        verify = ssl.create_default_context(cafile=str(settings.ca_certificate))
    headers = {"Accept": "application/dicom+json"}
    auth: httpx.Auth | None = None
    if settings.auth == "basic":
        password = settings.password.get_secret_value() if settings.password else ""
        auth = httpx.BasicAuth(settings.username, password)
    elif settings.auth == "bearer":
        token = settings.token.get_secret_value() if settings.token else ""
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(
        base_url=settings.url.rstrip("/"),
        headers=headers,
        auth=auth,
        verify=verify,
        timeout=timeout,
    )


def studies_path(prefix: str | None) -> str:
    """The path of a service's ``studies`` resource under the base URL: mercure (through
    dicomweb-client) appends the service's URL prefix, ``<url>/<prefix>/studies``."""
    prefix = (prefix or "").strip("/")
    return f"/{prefix}/studies" if prefix else "/studies"


BLOCK = 1 << 20
"""Bytes read from a file per step of a multipart body."""


class BodyChanged(OSError):
    """A file of a multipart body shrank while it was being sent."""


@dataclass(frozen=True, slots=True)
class DicomPart:
    """One DICOM file of a multipart body: a path (opened as sent) or an open binary file."""

    name: str
    size: int
    source: Path | BinaryIO


class DicomMultipart:
    """A ``multipart/related; type="application/dicom"`` body (STOW-RS), produced block by
    block: each file is read as it is sent, so a request of any size costs one block of memory.
    Used by the dispatcher's dicomweb target and the web interface's upload."""

    def __init__(self, parts: Sequence[DicomPart], boundary_prefix: str = "mercure") -> None:
        self.parts = parts
        self.boundary = f"{boundary_prefix}-{secrets.token_hex(12)}"
        self._head = f"--{self.boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        self._tail = f"--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    @property
    def length(self) -> int:
        return sum(len(self._head) + p.size + 2 for p in self.parts) + len(self._tail)

    async def stream(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield self._head
            with contextlib.ExitStack() as stack:
                if isinstance(part.source, Path):
                    handle: BinaryIO = stack.enter_context(open(part.source, "rb"))
                else:
                    handle = part.source
                    handle.seek(0)
                left = part.size
                while left > 0:
                    block = await asyncio.to_thread(handle.read, min(BLOCK, left))
                    if not block:
                        raise BodyChanged(f"{part.name} shrank while being sent")
                    left -= len(block)
                    yield block
            yield b"\r\n"
        yield self._tail
