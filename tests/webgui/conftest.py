"""Fixtures of the web interface tests.

- ``webgui``: a :class:`WebGui` (app, context, data folder, real bookkeeper app, fake clock)
  with one user per role: ``viewer``, ``operator``, ``admin`` (password ``PASSWORD``).
- ``anonymous``: a browser that is not signed in.
- ``viewer`` / ``operator`` / ``admin``: a browser signed in with that role.
- ``signed_in``: factory ``signed_in(role) -> httpx.Client`` for more browsers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from webgui_harness import WebGui, sign_in

ROLES = ("viewer", "operator", "admin")


@pytest.fixture
def webgui(tmp_path: Path) -> Iterator[WebGui]:
    """The web interface with a user of each role (named after the role)."""
    gui = WebGui(tmp_path)
    for role in ROLES:
        gui.add_user(role, role)
    yield gui
    gui.close()


@pytest.fixture
def signed_in(webgui: WebGui) -> Iterator[Callable[[str], httpx.Client]]:
    """Factory: a browser signed in as ``user`` (the users are named after their roles)."""
    clients: list[httpx.Client] = []

    def make(user: str) -> httpx.Client:
        client = webgui.client()
        clients.append(client)
        response = sign_in(client, user)
        assert response.status_code == 303, response.text
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def anonymous(webgui: WebGui) -> Iterator[httpx.Client]:
    """A browser that is not signed in."""
    with webgui.client() as client:
        yield client


@pytest.fixture
def viewer(signed_in: Callable[[str], httpx.Client]) -> httpx.Client:
    """A browser signed in with the viewer role."""
    return signed_in("viewer")


@pytest.fixture
def operator(signed_in: Callable[[str], httpx.Client]) -> httpx.Client:
    """A browser signed in with the operator role."""
    return signed_in("operator")


@pytest.fixture
def admin(signed_in: Callable[[str], httpx.Client]) -> httpx.Client:
    """A browser signed in with the admin role."""
    return signed_in("admin")
