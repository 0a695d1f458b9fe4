"""An HTTP client for a DICOMweb server, as the ``dicomweb`` target and source configure it.

Both kinds of configuration carry the same connection settings (``url``, ``auth`` none / basic /
bearer, ``username``, ``password``, ``token``, ``verify_tls``, ``ca_certificate``), so the
dispatcher (STOW-RS) and the retriever (QIDO-RS, WADO-RS) log in and verify alike.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal, Protocol

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
