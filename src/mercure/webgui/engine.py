"""Whether the images of docker modules are present on the container engine.

Asked through the Docker Engine API (the ``docker`` SDK: ``processing.docker_url``, else
``DOCKER_HOST`` and the rest of the environment, as the processor does) with short timeouts,
so that the modules page says "engine unreachable" instead of hanging. The web interface does
not import the processor; this is its own small client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

import docker
import docker.errors
import requests
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

ImageState = Literal["present", "missing", "engine unreachable"]
ENGINE_TIMEOUT = 3.0
"""Seconds one call to the engine may take."""
OVERALL_TIMEOUT = 6.0
"""Seconds the page waits for all its images at most."""


def _ask(docker_url: str | None, images: Sequence[str]) -> dict[str, ImageState]:
    try:
        if docker_url:
            client = docker.DockerClient(base_url=docker_url, timeout=int(ENGINE_TIMEOUT))
        else:
            client = docker.from_env(timeout=int(ENGINE_TIMEOUT))
    except docker.errors.DockerException as exc:
        log.info("container engine unreachable: %s", exc)
        return dict.fromkeys(images, "engine unreachable")
    found: dict[str, ImageState] = {}
    try:
        for image in images:
            try:
                client.images.get(image)
                found[image] = "present"
            except docker.errors.ImageNotFound:
                found[image] = "missing"
            except docker.errors.APIError as exc:
                # A name the engine cannot parse is not on it either.
                found[image] = "missing" if exc.status_code in (400, 404) else "engine unreachable"
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                log.info("container engine unreachable: %s", exc)
                found.update({i: "engine unreachable" for i in images if i not in found})
                break
    finally:
        client.close()
    return found


async def image_states(docker_url: str | None, images: Sequence[str]) -> dict[str, ImageState]:
    """``present``, ``missing`` or ``engine unreachable`` for each image (bounded in time)."""
    unique = sorted(set(images))
    if not unique:
        return {}
    try:
        return await asyncio.wait_for(run_in_threadpool(_ask, docker_url, unique), OVERALL_TIMEOUT)
    except TimeoutError:
        return dict.fromkeys(unique, "engine unreachable")
