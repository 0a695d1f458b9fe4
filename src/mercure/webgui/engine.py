"""Whether the images of docker modules are present on the container engine.

Asked over the Docker Engine API (``GET /images/{name}/json``; Podman serves the same) at
``processing.docker_url``, else ``DOCKER_HOST``, else ``unix:///var/run/docker.sock``, as the
processor's docker runner finds it. ``tcp://`` uses TLS when ``DOCKER_TLS_VERIFY`` is set, with
the certificates of ``DOCKER_CERT_PATH``. Short timeouts, so that the modules page says "engine
unreachable" instead of hanging. The web interface does not import the processor: this is its
own small client, on httpx (asynchronous, nothing left open when the engine is down).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

import httpx

log = logging.getLogger(__name__)

ImageState = Literal["present", "missing", "engine unreachable"]
ENGINE_TIMEOUT = 3.0
"""Seconds one call to the engine may take."""
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def _client(docker_url: str | None) -> httpx.AsyncClient:
    """A client for the engine's API; ValueError for an address it cannot use."""
    address = docker_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    parts = urlsplit(address)
    timeout = httpx.Timeout(ENGINE_TIMEOUT)
    if parts.scheme == "unix":
        transport = httpx.AsyncHTTPTransport(uds=parts.path)
        return httpx.AsyncClient(base_url="http://engine", transport=transport, timeout=timeout)
    if parts.scheme in ("tcp", "http", "https"):
        verify: ssl.SSLContext | bool = False
        scheme = "https" if parts.scheme == "https" else "http"
        if os.environ.get("DOCKER_TLS_VERIFY") or parts.scheme == "https":
            scheme = "https"
            certs = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
            verify = ssl.create_default_context(
                cafile=str(certs / "ca.pem") if (certs / "ca.pem").exists() else None
            )
            if (certs / "cert.pem").exists():
                verify.load_cert_chain(str(certs / "cert.pem"), str(certs / "key.pem"))
        return httpx.AsyncClient(
            base_url=f"{scheme}://{parts.netloc}", verify=verify, timeout=timeout
        )
    raise ValueError(f"{parts.scheme}:// engines are not asked by the web interface")


async def _state(client: httpx.AsyncClient, image: str) -> ImageState:
    response = await client.get(f"/images/{quote(image, safe='/:@')}/json")
    if response.status_code == 200:
        return "present"
    if response.status_code in (400, 404):  # 400: a name the engine cannot parse
        return "missing"
    return "engine unreachable"


async def image_states(docker_url: str | None, images: Sequence[str]) -> dict[str, ImageState]:
    """``present``, ``missing`` or ``engine unreachable`` for each image (bounded in time)."""
    unique = sorted(set(images))
    if not unique:
        return {}
    try:
        client = _client(docker_url)
    except (ValueError, OSError, ssl.SSLError) as exc:
        log.info("container engine not asked: %s", exc)
        return dict.fromkeys(unique, "engine unreachable")
    async with client:
        answers = await asyncio.gather(
            *(_state(client, image) for image in unique), return_exceptions=True
        )
    found: dict[str, ImageState] = {}
    for image, answer in zip(unique, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, httpx.HTTPError):
                raise answer
            log.info("container engine unreachable: %s", answer)
            found[image] = "engine unreachable"
        else:
            found[image] = answer
    return found
